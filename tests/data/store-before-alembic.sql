-- An SQLite store as Workdeck made it before Alembic (54377e7, schema version 14):
-- two runs of 'Upgrade check' on Test with their logs, a worker in Web Pool, alice
-- (operator on Test, token 1), Staging with four eyes. tests/test_store.py opens it.
BEGIN TRANSACTION;
CREATE TABLE api_token (
                id INTEGER PRIMARY KEY,
                person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
                digest VARCHAR NOT NULL UNIQUE,
                label VARCHAR NOT NULL DEFAULT '',
                created_at DATETIME NOT NULL,
                expires_at DATETIME,
                last_used_at DATETIME
            );
INSERT INTO "api_token" VALUES(1,1,'4666fc693e77889cc63c1475bf1b6c22d8c4581dd5a2aee73253bcc7dcf900a7','laptop','2026-12-04 17:17:58.857398',NULL,NULL);
CREATE TABLE audit_event (
                id INTEGER PRIMARY KEY,
                at DATETIME NOT NULL,
                actor VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                target VARCHAR NOT NULL,
                detail VARCHAR NOT NULL DEFAULT ''
            );
INSERT INTO "audit_event" VALUES(1,'2026-12-04 17:17:47.298510','server','pool.add','Default Worker Pool','the default pool');
INSERT INTO "audit_event" VALUES(2,'2026-12-04 17:17:47.318708','server','worker.add','built-in-worker','the built-in worker');
INSERT INTO "audit_event" VALUES(3,'2026-12-04 17:17:49.391176','root (socket)','environment.add','Staging','four eyes');
INSERT INTO "audit_event" VALUES(4,'2026-12-04 17:17:49.771129','root (socket)','environment.add','Test','');
INSERT INTO "audit_event" VALUES(5,'2026-12-04 17:17:53.299814','root (socket)','runbook.add','Upgrade check','2 steps');
INSERT INTO "audit_event" VALUES(6,'2026-12-04 17:17:56.402637','root (socket)','run.launch','run 1','Upgrade check on Test');
INSERT INTO "audit_event" VALUES(7,'2026-12-04 17:17:57.098464','root (socket)','run.launch','run 2','Upgrade check on Test');
INSERT INTO "audit_event" VALUES(8,'2026-12-04 17:17:57.491868','root (socket)','pool.add','Web Pool','');
INSERT INTO "audit_event" VALUES(9,'2026-12-04 17:17:57.806359','root (socket)','worker.add','w-web-01','127.0.0.1:2222 in Web Pool');
INSERT INTO "audit_event" VALUES(10,'2026-12-04 17:17:58.192267','root (socket)','person.add','alice','OS account workdeck-test');
INSERT INTO "audit_event" VALUES(11,'2026-12-04 17:17:58.565206','root (socket)','person.grant','alice','operator on Test');
INSERT INTO "audit_event" VALUES(12,'2026-12-04 17:17:58.858623','root (socket)','token.create','alice','token 1 (laptop)');
CREATE TABLE decision (
                id INTEGER PRIMARY KEY,
                run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                position INTEGER,
                action VARCHAR NOT NULL,
                actor VARCHAR NOT NULL,
                note VARCHAR NOT NULL DEFAULT '',
                at DATETIME NOT NULL
            );
CREATE TABLE environment (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                created_at DATETIME NOT NULL
            , four_eyes BOOLEAN NOT NULL DEFAULT 0);
INSERT INTO "environment" VALUES(1,'Staging','2026-12-04 17:17:49.391029',1);
INSERT INTO "environment" VALUES(2,'Test','2026-12-04 17:17:49.771003',0);
CREATE TABLE health_check (
                id INTEGER PRIMARY KEY,
                worker_id INTEGER NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
                checked_at DATETIME NOT NULL,
                status VARCHAR NOT NULL,
                reason VARCHAR NOT NULL DEFAULT '',
                latency_ms FLOAT,
                connect_ms FLOAT,
                load1 FLOAT,
                disk_free_mb FLOAT
            );
INSERT INTO "health_check" VALUES(1,1,'2026-12-04 17:17:49.868902','healthy','',92.47,NULL,3.22,72030.0);
INSERT INTO "health_check" VALUES(2,2,'2026-12-04 17:17:57.819842','unavailable','no SSH key to log in with: give the worker a key file (--key) or allow ssh-agent (--agent) (unreachable 1 times in a row: tried again in about 2 min)',NULL,NULL,NULL,NULL);
CREATE TABLE host_key (
                worker_id INTEGER PRIMARY KEY REFERENCES worker (id) ON DELETE CASCADE,
                public_key VARCHAR NOT NULL,
                fingerprint VARCHAR NOT NULL,
                trusted_at DATETIME NOT NULL,
                trusted_by VARCHAR NOT NULL DEFAULT ''
            );
CREATE TABLE lease (
                id INTEGER PRIMARY KEY,
                worker_id INTEGER NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
                run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                since DATETIME NOT NULL,
                worker_reason VARCHAR NOT NULL DEFAULT ''
            , pool VARCHAR NOT NULL DEFAULT '', step_name VARCHAR NOT NULL DEFAULT '', marker VARCHAR NOT NULL DEFAULT '', pgid INTEGER, boot_id VARCHAR NOT NULL DEFAULT '', proc_start VARCHAR NOT NULL DEFAULT '', orphan VARCHAR NOT NULL DEFAULT '', container VARCHAR NOT NULL DEFAULT '');
CREATE TABLE log_chunk (
                id INTEGER PRIMARY KEY,
                run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                first_seq INTEGER NOT NULL,
                last_seq INTEGER NOT NULL,
                position INTEGER NOT NULL,
                worker VARCHAR NOT NULL,
                stream VARCHAR NOT NULL,
                lines VARCHAR NOT NULL
            );
INSERT INTO "log_chunk" VALUES(1,1,1,1,1,'built-in-worker','workdeck','1796404676.505	step 1 (Say) attempt 1 on built-in-worker: healthy, 0 of 4 slots in use, the fewest of 1 with a free slot in Default Worker Pool');
INSERT INTO "log_chunk" VALUES(2,1,2,51,1,'built-in-worker','stdout','1796404676.534	hello line 1
hello line 2
hello line 3
hello line 4
hello line 5
hello line 6
hello line 7
hello line 8
hello line 9
hello line 10
hello line 11
hello line 12
hello line 13
hello line 14
hello line 15
hello line 16
hello line 17
hello line 18
hello line 19
hello line 20
hello line 21
hello line 22
hello line 23
hello line 24
hello line 25
hello line 26
hello line 27
hello line 28
hello line 29
hello line 30
hello line 31
hello line 32
hello line 33
hello line 34
hello line 35
hello line 36
hello line 37
hello line 38
hello line 39
hello line 40
hello line 41
hello line 42
hello line 43
hello line 44
hello line 45
hello line 46
hello line 47
hello line 48
hello line 49
hello line 50');
INSERT INTO "log_chunk" VALUES(3,1,52,52,1,'built-in-worker','stderr','1796404676.534	to stderr');
INSERT INTO "log_chunk" VALUES(4,1,53,53,1,'built-in-worker','workdeck','1796404676.534	step 1 succeeded: exit status 0');
INSERT INTO "log_chunk" VALUES(5,1,54,54,2,'built-in-worker','workdeck','1796404676.549	step 2 (Fail) attempt 1 on built-in-worker: healthy, 0 of 4 slots in use, the fewest of 1 with a free slot in Default Worker Pool');
INSERT INTO "log_chunk" VALUES(6,1,55,55,2,'built-in-worker','stdout','1796404676.588	failing');
INSERT INTO "log_chunk" VALUES(7,1,56,56,2,'built-in-worker','workdeck','1796404676.591	step 2 failed: exit status 3');
INSERT INTO "log_chunk" VALUES(8,2,1,1,1,'built-in-worker','workdeck','1796404677.189	step 1 (Say) attempt 1 on built-in-worker: healthy, 0 of 4 slots in use, the fewest of 1 with a free slot in Default Worker Pool');
INSERT INTO "log_chunk" VALUES(9,2,2,51,1,'built-in-worker','stdout','1796404677.229	bonjour line 1
bonjour line 2
bonjour line 3
bonjour line 4
bonjour line 5
bonjour line 6
bonjour line 7
bonjour line 8
bonjour line 9
bonjour line 10
bonjour line 11
1796404677.229	bonjour line 12
bonjour line 13
bonjour line 14
bonjour line 15
bonjour line 16
bonjour line 17
bonjour line 18
bonjour line 19
bonjour line 20
bonjour line 21
bonjour line 22
bonjour line 23
1796404677.229	bonjour line 24
bonjour line 25
bonjour line 26
bonjour line 27
bonjour line 28
bonjour line 29
bonjour line 30
bonjour line 31
bonjour line 32
bonjour line 33
bonjour line 34
bonjour line 35
bonjour line 36
bonjour line 37
bonjour line 38
bonjour line 39
bonjour line 40
bonjour line 41
bonjour line 42
bonjour line 43
bonjour line 44
bonjour line 45
bonjour line 46
bonjour line 47
bonjour line 48
bonjour line 49
1796404677.229	bonjour line 50');
INSERT INTO "log_chunk" VALUES(10,2,52,52,1,'built-in-worker','stderr','1796404677.229	to stderr');
INSERT INTO "log_chunk" VALUES(11,2,53,53,1,'built-in-worker','workdeck','1796404677.231	step 1 succeeded: exit status 0');
INSERT INTO "log_chunk" VALUES(12,2,54,54,2,'built-in-worker','workdeck','1796404677.270	step 2 (Fail) attempt 1 on built-in-worker: healthy, 0 of 4 slots in use, the fewest of 1 with a free slot in Default Worker Pool');
INSERT INTO "log_chunk" VALUES(13,2,55,55,2,'built-in-worker','stdout','1796404677.310	failing');
INSERT INTO "log_chunk" VALUES(14,2,56,56,2,'built-in-worker','workdeck','1796404677.317	step 2 failed: exit status 3');
CREATE TABLE person (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                created_at DATETIME NOT NULL
            , os_user VARCHAR);
INSERT INTO "person" VALUES(1,'alice','2026-12-04 17:17:58.192126','workdeck-test');
CREATE TABLE pool (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                description VARCHAR NOT NULL DEFAULT '',
                "default" BOOLEAN NOT NULL DEFAULT 0,
                created_at DATETIME NOT NULL
            , engine VARCHAR NOT NULL DEFAULT '');
INSERT INTO "pool" VALUES(1,'Default Worker Pool','Where steps run when they name no pool',1,'2026-12-04 17:17:47.297035','');
INSERT INTO "pool" VALUES(2,'Web Pool','',0,'2026-12-04 17:17:57.491756','');
CREATE TABLE pool_member (
                pool_id INTEGER NOT NULL REFERENCES pool (id) ON DELETE CASCADE,
                worker_id INTEGER NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
                PRIMARY KEY (pool_id, worker_id)
            );
INSERT INTO "pool_member" VALUES(1,1);
INSERT INTO "pool_member" VALUES(2,2);
CREATE TABLE provisioner (
                pool_id INTEGER PRIMARY KEY REFERENCES pool (id) ON DELETE CASCADE,
                create_command VARCHAR NOT NULL,
                destroy_command VARCHAR NOT NULL,
                min_workers INTEGER NOT NULL DEFAULT 0,
                max_workers INTEGER NOT NULL DEFAULT 1,
                capacity INTEGER NOT NULL DEFAULT 1,
                idle_s FLOAT NOT NULL DEFAULT 300,
                wait_s FLOAT NOT NULL DEFAULT 10,
                timeout_s FLOAT NOT NULL DEFAULT 120,
                per_minute INTEGER NOT NULL DEFAULT 6,
                state VARCHAR NOT NULL DEFAULT 'ready',
                note VARCHAR NOT NULL DEFAULT '',
                note_at DATETIME
            );
CREATE TABLE role_grant (
                id INTEGER PRIMARY KEY,
                person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
                role VARCHAR NOT NULL,
                environment VARCHAR NOT NULL DEFAULT ''
            );
INSERT INTO "role_grant" VALUES(1,1,'operator','Test');
CREATE TABLE run (
                id INTEGER PRIMARY KEY,
                runbook VARCHAR NOT NULL,
                environment VARCHAR NOT NULL,
                status VARCHAR NOT NULL DEFAULT 'queued',
                reason VARCHAR NOT NULL DEFAULT '',
                definition VARCHAR NOT NULL,
                variables VARCHAR NOT NULL DEFAULT '{}',
                secrets VARCHAR NOT NULL DEFAULT '',
                guided BOOLEAN NOT NULL DEFAULT 0,
                step_through BOOLEAN NOT NULL DEFAULT 0,
                actor VARCHAR NOT NULL DEFAULT '',
                created_at DATETIME NOT NULL,
                started_at DATETIME,
                finished_at DATETIME,
                output_bytes INTEGER NOT NULL DEFAULT 0
            , waiting VARCHAR NOT NULL DEFAULT '', person VARCHAR NOT NULL DEFAULT '');
INSERT INTO "run" VALUES(1,'Upgrade check','Test','failed','a step failed','{"name":"Upgrade check","description":"Made by Workdeck before Alembic","variables":[{"name":"greeting","default":"hello","sensitive":false,"description":""}],"pools":{},"steps":[{"name":"Say","script":"for i in $(seq 1 50); do echo \"$greeting line $i\"; done\necho \"to stderr\" >&2\n","manual":null,"pool":"Default Worker Pool","timeout":3600,"container":null,"retries":0,"run_on":"any","require_all":false,"condition":"success","approval":"anyone"},{"name":"Fail","script":"echo failing; exit 3","manual":null,"pool":"Default Worker Pool","timeout":3600,"container":null,"retries":0,"run_on":"any","require_all":false,"condition":"success","approval":"anyone"}]}','{"greeting": "hello"}','',0,0,'root (socket)','2026-12-04 17:17:56.400788','2026-12-04 17:17:56.460974','2026-12-04 17:17:56.611927',709,'','root');
INSERT INTO "run" VALUES(2,'Upgrade check','Test','failed','a step failed','{"name":"Upgrade check","description":"Made by Workdeck before Alembic","variables":[{"name":"greeting","default":"hello","sensitive":false,"description":""}],"pools":{},"steps":[{"name":"Say","script":"for i in $(seq 1 50); do echo \"$greeting line $i\"; done\necho \"to stderr\" >&2\n","manual":null,"pool":"Default Worker Pool","timeout":3600,"container":null,"retries":0,"run_on":"any","require_all":false,"condition":"success","approval":"anyone"},{"name":"Fail","script":"echo failing; exit 3","manual":null,"pool":"Default Worker Pool","timeout":3600,"container":null,"retries":0,"run_on":"any","require_all":false,"condition":"success","approval":"anyone"}]}','{"greeting": "bonjour"}','',0,0,'root (socket)','2026-12-04 17:17:57.097276','2026-12-04 17:17:57.161880','2026-12-04 17:17:57.327363',809,'','root');
CREATE TABLE run_step (
                id INTEGER PRIMARY KEY,
                run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                name VARCHAR NOT NULL,
                worker VARCHAR NOT NULL DEFAULT '',
                status VARCHAR NOT NULL DEFAULT 'queued',
                reason VARCHAR NOT NULL DEFAULT '',
                attempt INTEGER NOT NULL DEFAULT 1,
                exit_status INTEGER,
                started_at DATETIME,
                finished_at DATETIME
            , worker_reason VARCHAR NOT NULL DEFAULT '');
INSERT INTO "run_step" VALUES(1,1,1,'Say','built-in-worker','succeeded','',1,0,'2026-12-04 17:17:56.502231','2026-12-04 17:17:56.534400','built-in-worker: healthy, 0 of 4 slots in use, the fewest of 1 with a free slot in Default Worker Pool');
INSERT INTO "run_step" VALUES(2,1,2,'Fail','built-in-worker','failed','exit status 3',1,3,'2026-12-04 17:17:56.547675','2026-12-04 17:17:56.590783','built-in-worker: healthy, 0 of 4 slots in use, the fewest of 1 with a free slot in Default Worker Pool');
INSERT INTO "run_step" VALUES(3,2,1,'Say','built-in-worker','succeeded','',1,0,'2026-12-04 17:17:57.185573','2026-12-04 17:17:57.230604','built-in-worker: healthy, 0 of 4 slots in use, the fewest of 1 with a free slot in Default Worker Pool');
INSERT INTO "run_step" VALUES(4,2,2,'Fail','built-in-worker','failed','exit status 3',1,3,'2026-12-04 17:17:57.263499','2026-12-04 17:17:57.317296','built-in-worker: healthy, 0 of 4 slots in use, the fewest of 1 with a free slot in Default Worker Pool');
CREATE TABLE runbook (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                description VARCHAR NOT NULL DEFAULT '',
                definition VARCHAR NOT NULL,
                updated_at DATETIME NOT NULL
            );
INSERT INTO "runbook" VALUES(1,'Upgrade check','Made by Workdeck before Alembic','{"name":"Upgrade check","description":"Made by Workdeck before Alembic","variables":[{"name":"greeting","default":"hello","sensitive":false,"description":""}],"pools":{},"steps":[{"name":"Say","script":"for i in $(seq 1 50); do echo \"$greeting line $i\"; done\necho \"to stderr\" >&2\n","manual":null,"pool":"Default Worker Pool","timeout":3600,"container":null,"retries":0,"run_on":"any","require_all":false,"condition":"success","approval":"anyone"},{"name":"Fail","script":"echo failing; exit 3","manual":null,"pool":"Default Worker Pool","timeout":3600,"container":null,"retries":0,"run_on":"any","require_all":false,"condition":"success","approval":"anyone"}]}','2026-12-04 17:17:53.299740');
CREATE TABLE setting (
                key VARCHAR PRIMARY KEY,
                value VARCHAR NOT NULL
            );
INSERT INTO "setting" VALUES('builtin_worker','true');
CREATE TABLE "usage_sample" (
                id INTEGER PRIMARY KEY,
                pool_id INTEGER NOT NULL REFERENCES pool (id) ON DELETE CASCADE,
                at DATETIME NOT NULL,
                leased INTEGER NOT NULL,
                capacity INTEGER NOT NULL,
                queued INTEGER NOT NULL
            );
INSERT INTO "usage_sample" VALUES(1,1,'2026-12-04 17:17:49.551025',0,0,0);
INSERT INTO "usage_sample" VALUES(2,1,'2026-12-04 17:17:52.106344',0,4,0);
INSERT INTO "usage_sample" VALUES(3,1,'2026-12-04 17:17:56.491340',0,4,1);
INSERT INTO "usage_sample" VALUES(4,1,'2026-12-04 17:17:56.709697',0,4,0);
INSERT INTO "usage_sample" VALUES(5,1,'2026-12-04 17:17:57.176224',1,4,1);
INSERT INTO "usage_sample" VALUES(6,1,'2026-12-04 17:17:57.379770',0,4,0);
INSERT INTO "usage_sample" VALUES(7,2,'2026-12-04 17:17:57.601097',0,0,0);
INSERT INTO "usage_sample" VALUES(8,2,'2026-12-04 17:17:57.815336',0,0,0);
CREATE TABLE worker (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                host VARCHAR NOT NULL,
                port INTEGER NOT NULL DEFAULT 22,
                user VARCHAR,
                key_path VARCHAR,
                use_agent BOOLEAN NOT NULL DEFAULT 0,
                capacity INTEGER NOT NULL DEFAULT 4,
                enabled BOOLEAN NOT NULL DEFAULT 1,
                builtin BOOLEAN NOT NULL DEFAULT 0,
                work_dir VARCHAR NOT NULL DEFAULT '.workdeck/work',
                created_at DATETIME NOT NULL,
                check_status VARCHAR NOT NULL DEFAULT 'unknown',
                reason VARCHAR NOT NULL DEFAULT '',
                checked_at DATETIME,
                latency_ms FLOAT,
                connect_ms FLOAT,
                facts VARCHAR NOT NULL DEFAULT '{}',
                presented_host_key VARCHAR,
                trust_host_key BOOLEAN NOT NULL DEFAULT 0
            , draining BOOLEAN NOT NULL DEFAULT 0, engine VARCHAR NOT NULL DEFAULT '', dynamic BOOLEAN NOT NULL DEFAULT 0);
INSERT INTO "worker" VALUES(1,'built-in-worker','localhost',0,'root',NULL,0,4,1,1,'.workdeck/work','2026-12-04 17:17:47.316567','healthy','','2026-12-04 17:17:49.868902',92.47,NULL,'{"os": "Debian GNU/Linux 12 (bookworm)", "kernel": "Linux 6.18.44-fc-v1147", "hostname": "vm", "arch": "x86_64", "cpus": 2, "login_shell": "/bin/bash", "container_engine": "podman 4.3.1", "uptime_s": 63700.42, "load": [3.22, 2.55, 1.82], "mem_total_mb": 24105.1, "mem_available_mb": 22942.1, "work_dir": "/tmp/oldstore/home/.workdeck/work", "disks": [{"mount": "/", "free_mb": 72030.0, "size_mb": 258019.6}]}',NULL,0,0,'',0);
INSERT INTO "worker" VALUES(2,'w-web-01','127.0.0.1',2222,NULL,NULL,0,4,1,0,'.workdeck/work','2026-12-04 17:17:57.805395','unavailable','no SSH key to log in with: give the worker a key file (--key) or allow ssh-agent (--agent) (unreachable 1 times in a row: tried again in about 2 min)','2026-12-04 17:17:57.819842',NULL,NULL,'{}',NULL,0,0,'',0);
CREATE INDEX ix_worker_name ON worker (name);
CREATE INDEX ix_pool_name ON pool (name);
CREATE INDEX ix_health_check_worker_id ON health_check (worker_id);
CREATE INDEX ix_health_check_checked_at ON health_check (checked_at);
CREATE INDEX ix_audit_event_at ON audit_event (at);
CREATE INDEX ix_environment_name ON environment (name);
CREATE INDEX ix_runbook_name ON runbook (name);
CREATE INDEX ix_run_runbook ON run (runbook);
CREATE INDEX ix_run_created_at ON run (created_at);
CREATE INDEX ix_run_step_run_id ON run_step (run_id);
CREATE INDEX ix_log_chunk_run_id ON log_chunk (run_id, last_seq);
CREATE INDEX ix_lease_worker_id ON lease (worker_id);
CREATE INDEX ix_lease_run_id ON lease (run_id);
CREATE INDEX ix_decision_run_id ON decision (run_id);
CREATE INDEX ix_run_finished_at ON run (finished_at);
CREATE INDEX ix_usage_sample_pool_id ON usage_sample (pool_id, at);
CREATE INDEX ix_usage_sample_at ON usage_sample (at);
CREATE INDEX ix_person_name ON person (name);
CREATE INDEX ix_role_grant_person_id ON role_grant (person_id);
CREATE INDEX ix_api_token_person_id ON api_token (person_id);
CREATE INDEX ix_api_token_digest ON api_token (digest);
CREATE UNIQUE INDEX ix_person_os_user ON person (os_user);
COMMIT;
PRAGMA user_version = 14;
