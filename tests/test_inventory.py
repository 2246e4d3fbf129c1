"""Tests for importing workers from Ansible INI/YAML inventories and ssh_config files."""

import os
import pickle
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# (inventory is first-party or third-party depending on where ruff runs; keep it last either way.)
from console.inventory import (
    InventoryError,
    WorkerSpec,
    load_inventory,
    parse_ansible_ini,
    parse_ansible_yaml,
    parse_inventory,
    parse_ssh_config,
)

Parser = Callable[[str], list[WorkerSpec]]


def ini(text: str) -> list[WorkerSpec]:
    return parse_ansible_ini(textwrap.dedent(text), "inventory.ini")


def yml(text: str) -> list[WorkerSpec]:
    return parse_ansible_yaml(textwrap.dedent(text), "inventory.yml")


def ssh(text: str) -> list[WorkerSpec]:
    return parse_ssh_config(textwrap.dedent(text), "ssh_config")


def by_name(workers: list[WorkerSpec]) -> dict[str, WorkerSpec]:
    return {worker.name: worker for worker in workers}


HOME = os.path.expanduser("~")


# --------------------------------------------------------------------------- Ansible INI


def test_ini_groups_become_pools_and_alias_is_default_host() -> None:
    workers = ini(
        """
        [web]
        web1
        web2

        [db]
        db1
        """
    )
    assert workers == [
        WorkerSpec("web1", "web1", pools=("web",)),
        WorkerSpec("web2", "web2", pools=("web",)),
        WorkerSpec("db1", "db1", pools=("db",)),
    ]


def test_ini_inline_connection_variables() -> None:
    [worker] = ini(
        "[web]\n"
        "web1 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=deploy"
        " ansible_ssh_private_key_file=~/.ssh/web\n"
    )
    assert worker == WorkerSpec("web1", "10.0.0.1", 2222, "deploy", f"{HOME}/.ssh/web", ("web",))


def test_ini_quoted_values_are_unquoted() -> None:
    [worker] = ini(
        "[web]\n"
        "web1 ansible_user=\"deploy\" ansible_host='10.0.0.1'"
        ' ansible_ssh_private_key_file="/keys/my key.pem"\n'
    )
    assert (worker.user, worker.host, worker.key_path) == ("deploy", "10.0.0.1", "/keys/my key.pem")


def test_ini_comments_are_ignored() -> None:
    workers = ini(
        """
        # a hash comment
        ; a semicolon comment
        [web]  # trailing comment on a header
        web1 ansible_port=2200  # trailing comment on a host
        ;web2
        """
    )
    assert workers == [WorkerSpec("web1", "web1", 2200, pools=("web",))]


def test_ini_ungrouped_hosts_have_no_pools() -> None:
    workers = ini(
        """
        lonely ansible_host=10.0.0.9
        [ungrouped]
        other
        [all]
        everyone
        """
    )
    assert [(w.name, w.pools) for w in workers] == [("lonely", ()), ("other", ()), ("everyone", ())]


def test_ini_group_vars_apply_and_host_vars_win() -> None:
    workers = by_name(
        ini(
            """
            [web]
            web1
            web2 ansible_user=root

            [web:vars]
            ansible_user=deploy
            ansible_port="2222"
            """
        )
    )
    assert (workers["web1"].user, workers["web1"].port) == ("deploy", 2222)
    assert (workers["web2"].user, workers["web2"].port) == ("root", 2222)


def test_ini_children_give_parent_pools_and_precedence() -> None:
    workers = by_name(
        ini(
            """
            [web_prod]
            web1
            web2 ansible_user=hostuser

            [db_prod]
            db1

            [prod:children]
            web_prod
            db_prod

            [all:vars]
            ansible_user=alluser
            ansible_port=2000

            [prod:vars]
            ansible_user=produser
            ansible_port=3000

            [web_prod:vars]
            ansible_user=webuser
            """
        )
    )
    assert workers["web1"] == WorkerSpec(
        "web1", "web1", 3000, "webuser", pools=("prod", "web_prod")
    )
    assert workers["web2"].user == "hostuser"
    assert (workers["db1"].user, workers["db1"].port, workers["db1"].pools) == (
        "produser",
        3000,
        ("db_prod", "prod"),
    )


def test_ini_deeper_group_beats_shallower_regardless_of_file_order() -> None:
    # "a_child" sorts before "z_parent", so only depth can make the child win.
    [worker] = ini(
        """
        [a_child:vars]
        ansible_user=child
        [z_parent:vars]
        ansible_user=parent
        [z_parent:children]
        a_child
        [a_child]
        web1
        """
    )
    assert worker.user == "child"


def test_ini_host_in_several_groups_is_one_worker_with_all_pools() -> None:
    workers = ini(
        """
        [web]
        web1 ansible_user=deploy
        [monitoring]
        web1 ansible_port=2222
        db1
        [db]
        db1
        """
    )
    assert workers == [
        WorkerSpec("web1", "web1", 2222, "deploy", pools=("monitoring", "web")),
        WorkerSpec("db1", "db1", pools=("db", "monitoring")),
    ]


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("web[1:3]", ["web1", "web2", "web3"]),
        ("web[01:03].example.com", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("n[1:10:2]", ["n1", "n3", "n5", "n7", "n9"]),
        ("n[08:10]", ["n08", "n09", "n10"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
    ],
)
def test_ini_host_ranges_expand(pattern: str, names: list[str]) -> None:
    workers = ini(f"[web]\n{pattern} ansible_user=deploy\n")
    assert [w.name for w in workers] == names
    assert all(w.host == w.name and w.user == "deploy" for w in workers)


def test_ini_range_with_ansible_host_variable_keeps_alias_names() -> None:
    workers = ini("[web]\nweb[1:2] ansible_host=10.0.0.1\n")
    assert [(w.name, w.host) for w in workers] == [("web1", "10.0.0.1"), ("web2", "10.0.0.1")]


def test_ini_host_port_shorthand() -> None:
    workers = ini("[web]\n10.0.0.1:2201\nweb[1:2]:2202\nfe80::1\n")
    assert [(w.name, w.port) for w in workers] == [
        ("10.0.0.1", 2201),
        ("web1", 2202),
        ("web2", 2202),
        ("fe80::1", 22),
    ]


def test_ini_older_ansible_ssh_names_and_new_names_win_in_same_scope() -> None:
    workers = by_name(
        ini(
            """
            [web]
            old ansible_ssh_host=10.0.0.1 ansible_ssh_port=2222 ansible_ssh_user=legacy
            both ansible_ssh_user=legacy ansible_user=modern
            """
        )
    )
    assert (workers["old"].host, workers["old"].port, workers["old"].user) == (
        "10.0.0.1",
        2222,
        "legacy",
    )
    assert workers["both"].user == "modern"


def test_ini_more_specific_scope_beats_newer_variable_name() -> None:
    [worker] = ini("[web]\nweb1 ansible_ssh_user=hostlevel\n[web:vars]\nansible_user=grouplevel\n")
    assert worker.user == "hostlevel"


# --------------------------------------------------------------------------- Ansible YAML

EQUIVALENT_INI = """
lonely

[web_prod]
web[01:02] ansible_user=deploy
[db_prod]
db1 ansible_host=10.0.0.5 ansible_port=5432

[prod:children]
web_prod
db_prod

[prod:vars]
ansible_ssh_private_key_file=~/.ssh/prod
ansible_user=ops
"""

EQUIVALENT_YAML = """
all:
  hosts:
    lonely:
  children:
    prod:
      vars:
        ansible_ssh_private_key_file: ~/.ssh/prod
        ansible_user: ops
      children:
        web_prod:
          hosts:
            web[01:02]:
              ansible_user: deploy
        db_prod:
          hosts:
            db1:
              ansible_host: 10.0.0.5
              ansible_port: 5432
"""


def test_yaml_gives_same_workers_as_equivalent_ini() -> None:
    ini_workers = by_name(parse_ansible_ini(EQUIVALENT_INI, "a.ini"))
    yaml_workers = by_name(parse_ansible_yaml(EQUIVALENT_YAML, "a.yml"))
    assert yaml_workers == ini_workers
    assert yaml_workers["web02"] == WorkerSpec(
        "web02", "web02", 22, "deploy", f"{HOME}/.ssh/prod", ("prod", "web_prod")
    )
    assert yaml_workers["db1"].port == 5432
    assert yaml_workers["lonely"].pools == ()


def test_yaml_precedence_and_string_hosts() -> None:
    workers = by_name(
        yml(
            """
            all:
              vars: {ansible_user: alluser, ansible_port: 2000}
              children:
                parent:
                  vars: {ansible_user: parentuser}
                  children:
                    child:
                      vars: {ansible_port: "2100"}
                      hosts: c1
                solo:
                  hosts:
                    s1: {ansible_user: hostuser}
                    s2: ~
            """
        )
    )
    assert workers["c1"] == WorkerSpec("c1", "c1", 2100, "parentuser", pools=("child", "parent"))
    assert (workers["s1"].user, workers["s1"].port) == ("hostuser", 2000)
    assert workers["s2"].user == "alluser"


def test_yaml_top_level_groups_without_all_and_null_variables() -> None:
    workers = yml(
        """
        web:
          hosts:
            web1:
              ansible_host: ~
            web2:
        db:
          hosts:
            web1:
        """
    )
    assert workers == [
        WorkerSpec("web1", "web1", pools=("db", "web")),
        WorkerSpec("web2", "web2", pools=("web",)),
    ]


# --------------------------------------------------------------------------- ssh_config


def test_ssh_several_aliases_on_one_host_line() -> None:
    workers = ssh(
        """
        Host alpha beta
            User deploy
        Host gamma
            HostName 10.0.0.3
        """
    )
    assert workers == [
        WorkerSpec("alpha", "alpha", user="deploy"),
        WorkerSpec("beta", "beta", user="deploy"),
        WorkerSpec("gamma", "10.0.0.3"),
    ]


def test_ssh_wildcard_defaults_at_end_fill_only_unset_values() -> None:
    workers = by_name(
        ssh(
            """
            Host web1
                User alice
            Host web2
                Port 2202
            Host *
                User default
                Port 2200
                IdentityFile ~/.ssh/default
            """
        )
    )
    assert workers["web1"] == WorkerSpec("web1", "web1", 2200, "alice", f"{HOME}/.ssh/default")
    assert workers["web2"] == WorkerSpec("web2", "web2", 2202, "default", f"{HOME}/.ssh/default")
    assert "*" not in workers


def test_ssh_first_value_wins_across_blocks_and_within_a_block() -> None:
    workers = by_name(
        ssh(
            """
            Host web*
                User first
                IdentityFile /keys/one
                IdentityFile /keys/two
            Host web1
                User second
                HostName %h.example.com
            """
        )
    )
    assert workers["web1"] == WorkerSpec("web1", "web1.example.com", user="first",
                                         key_path="/keys/one")


def test_ssh_key_equals_value_form_and_case_insensitive_keywords() -> None:
    workers = ssh(
        """
        host=box
          hostname = 10.0.0.7
          PORT=2022
          uSeR= admin
          IdentityFile="~/.ssh/id box"
        """
    )
    assert workers == [WorkerSpec("box", "10.0.0.7", 2022, "admin", f"{HOME}/.ssh/id box")]


def test_ssh_negated_pattern_excludes_alias() -> None:
    workers = by_name(
        ssh(
            """
            Host bastion web
            Host * !bastion
                ProxyJump bastion
                User internal
            Host *
                User outside
            """
        )
    )
    assert workers["web"].user == "internal"
    assert workers["bastion"].user == "outside"
    assert "!bastion" not in workers


def test_ssh_match_blocks_and_include_are_skipped() -> None:
    workers = ssh(
        """
        Include ~/.ssh/config.d/*
        Host web
            User deploy
        Match host web exec "true"
            User matched
            Port 9999
        Host db
            Port 2200
        """
    )
    assert workers == [WorkerSpec("web", "web", user="deploy"), WorkerSpec("db", "db", 2200)]


def test_ssh_global_section_applies_first_and_wildcard_hosts_are_not_workers() -> None:
    workers = ssh(
        """
        # settings before any Host apply to every host
        User global
        Host *.internal
            User internal
        Host web?.prod
            Port 2200
        Host app.internal
        """
    )
    assert workers == [WorkerSpec("app.internal", "app.internal", user="global")]


def test_ssh_identityfile_none_means_no_key_and_gives_no_pools() -> None:
    [worker] = ssh("Host web\n  IdentityFile none\nHost *\n  IdentityFile ~/.ssh/id\n")
    assert worker.key_path is None
    assert worker.pools == ()


# --------------------------------------------------------------------------- format detection


def test_detects_ssh_config_after_comments_case_insensitively() -> None:
    workers = parse_inventory("# my hosts\n\nhost web\n  hostname 10.0.0.1\n")
    assert workers == [WorkerSpec("web", "10.0.0.1")]


def test_detects_yaml_inventory() -> None:
    assert parse_inventory(EQUIVALENT_YAML) == parse_ansible_yaml(EQUIVALENT_YAML, "x")
    flow = "all: {children: {web: {hosts: {web1: }}}}\n"
    assert parse_inventory(flow) == [WorkerSpec("web1", "web1", pools=("web",))]


def test_detects_ini_even_though_section_headers_are_yaml_lists() -> None:
    assert parse_inventory("[web]\nweb1\n") == [WorkerSpec("web1", "web1", pools=("web",))]
    assert parse_inventory(EQUIVALENT_INI) == parse_ansible_ini(EQUIVALENT_INI, "x")
    assert parse_inventory("web1 ansible_host=10.0.0.1\n") == [WorkerSpec("web1", "10.0.0.1")]


def test_ini_host_named_like_ssh_keyword_stays_ini() -> None:
    assert parse_inventory("user ansible_host=10.0.0.1\n") == [WorkerSpec("user", "10.0.0.1")]


def test_detection_sends_broken_yaml_to_yaml_parser() -> None:
    with pytest.raises(InventoryError, match=r"^inv line 2: YAML syntax error: .*'\\t'"):
        parse_inventory("all:\n\thosts:\n", "inv")


# --------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize("port", ["70000", "0", "abc", "-1"])
def test_ini_bad_port_names_the_line(port: str) -> None:
    text = f"[web]\nweb1\n[web:vars]\nansible_port={port}\n"
    with pytest.raises(InventoryError) as info:
        ini(text)
    assert (
        str(info.value)
        == f'inventory.ini line 4: port "{port}" is not a number between 1 and 65535'
    )
    assert info.value.line == 4


def test_ini_bad_port_shorthand_names_the_line() -> None:
    with pytest.raises(InventoryError, match=r'^inventory.ini line 2: port "99999" is not'):
        ini("[web]\nweb1:99999\n")


@pytest.mark.parametrize("port", ["70000", "true", "22.5", "[22]"])
def test_yaml_bad_port_names_the_line(port: str) -> None:
    text = f"all:\n  hosts:\n    web1:\n      ansible_port: {port}\n"
    with pytest.raises(InventoryError, match=r"^inventory.yml line 4: port .* between 1 and 65535"):
        yml(text)


def test_ssh_bad_port_is_refused_even_in_unused_block() -> None:
    with pytest.raises(InventoryError, match=r'^ssh_config line 4: port "0" is not a number'):
        ssh("Host web\n  Port 22\nHost other-*\n  Port 0\n")


@pytest.mark.parametrize(
    ("text", "lineno", "reason"),
    [
        ("[web]\nweb1 =deploy\n", 2, 'has no variable name before "="'),
        (
            "[web]\nweb1 ansible_user\n",
            2,
            'expected key=value after the host name, got "ansible_user"',
        ),
        ("[web]\nweb1 ansible_user='deploy\n", 2, "unbalanced quote"),
        ("[web]\nweb1\n[web:vars]\nansible_user deploy\n", 4, "expected key=value in [web:vars]"),
        ("[web]\nweb1\n[web:vars]\n=deploy\n", 4, 'has no variable name before "="'),
        ("web0\n[web\nweb1\n", 2, 'section header "[web" is missing its closing "]"'),
        ("[my web]\nweb1\n", 1, "is malformed"),
        ("[web:hostz]\nweb1\n", 1, 'unknown type "hostz"'),
        ("[web]\nweb1\n[prod:children]\nweb extra\n", 4, "expected one group name per line"),
        ("[web]\nweb1\n[dbs:vars]\nansible_user=x\n", 3, 'group "dbs", which is never declared'),
        (
            "[web]\nweb1\n[prod:children]\nweb\ndbs\n",
            5,
            'child group "dbs" of "prod" is never declared',
        ),
        (
            "[a:children]\nb\n[b:children]\na\n[b]\nweb1\n",
            4,
            "group children form a loop (a -> b -> a)",
        ),
        ("[web:children]\nall\n[web]\nweb1\n", 2, 'group "all" cannot be a child'),
    ],
)
def test_malformed_ini_lines_name_the_line(text: str, lineno: int, reason: str) -> None:
    with pytest.raises(InventoryError) as info:
        ini(text)
    assert str(info.value).startswith(f"inventory.ini line {lineno}: ")
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("web[3:1]", "the start is after the end"),
        ("web[c:a]", "the start is after the end"),
        ("web[01:100]", "same number of digits"),
        ("web[1:]", "the end is missing"),
        ("web[a:9]", "numbers or single letters"),
        ("web[1:5:0]", "the step must be a positive whole number"),
        ("web[1-5]", "expected [start:end]"),
        ("web[1:3", "unbalanced"),
        ("web]1:3[", "unbalanced"),
        ("web[1:100000]", "more than 10000 hosts"),
    ],
)
def test_bad_ranges_name_the_line(pattern: str, reason: str) -> None:
    with pytest.raises(InventoryError) as info:
        ini(f"[web]\nok1\n{pattern}\n")
    assert str(info.value).startswith("inventory.ini line 3: ")
    assert reason in str(info.value)


def test_bad_range_in_yaml_names_the_line() -> None:
    with pytest.raises(InventoryError, match=r"^inventory.yml line 4: .*bad range"):
        yml("all:\n  hosts:\n    ok1:\n    web[5:1]:\n")


def test_yaml_syntax_error_uses_problem_mark_line() -> None:
    with pytest.raises(InventoryError, match=r"^inventory.yml line 4: YAML syntax error: "):
        yml("all:\n  hosts:\n    web1:\n   bad: [unclosed\n")


@pytest.mark.parametrize(
    ("text", "lineno", "reason"),
    [
        ("- web1\n- web2\n", 1, "must be a mapping of group names, not a list"),
        ("all:\n  hosts:\n    - web1\n", 2, '"hosts" of group "all" must be a mapping, not a list'),
        ("all:\n  host:\n    web1:\n", 2, 'unexpected key "host"'),
        ("all:\n  hosts:\n    web1: [a]\n", 3, "must map to its variables"),
        ("all: [web1]\n", 1, "must be a mapping of hosts, children and vars"),
        ("all:\n  children:\n    yes:\n", 3, "group name must be text"),
        (
            "all:\n  children:\n    web: &w\n      children:\n        inner: *w\n",
            5,
            "contains itself",
        ),
    ],
)
def test_yaml_structure_errors_name_the_line(text: str, lineno: int, reason: str) -> None:
    with pytest.raises(InventoryError) as info:
        yml(text)
    assert str(info.value).startswith(f"inventory.yml line {lineno}: ")
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("parse", "text", "lineno"),
    [
        (ini, '[web]\n"web 1"\n', 2),
        (ini, '[web]\n""\n', 2),
        (yml, 'all:\n  hosts:\n    "web\\t1":\n', 3),
        (yml, "all:\n  children:\n    my group:\n      hosts: {a: }\n", 3),
        (ssh, 'Host ok\nHost "web 1"\n', 2),
    ],
)
def test_bad_names_are_refused(parse: Parser, text: str, lineno: int) -> None:
    with pytest.raises(InventoryError) as info:
        parse(text)
    assert info.value.line == lineno
    assert "name" in info.value.reason


@pytest.mark.parametrize(
    ("parse", "text", "lineno"),
    [
        (ini, "[web]\nweb1 ansible_host='10.0.0.1 extra'\n", 2),
        (ini, '[web]\nweb1\n[web:vars]\nansible_user="de ploy"\n', 4),
        (yml, 'all:\n  hosts:\n    web1:\n      ansible_host: "10.0.0.1\\u0007"\n', 4),
        (ssh, 'Host web\n  HostName "10.0.0.1 x"\n', 2),
    ],
)
def test_host_and_user_values_with_whitespace_or_control_chars_are_refused(
    parse: Parser, text: str, lineno: int
) -> None:
    with pytest.raises(InventoryError, match="contains whitespace or control characters") as info:
        parse(text)
    assert info.value.line == lineno


def test_jinja_templates_are_refused_rather_than_imported_literally() -> None:
    with pytest.raises(
        InventoryError, match=r"^inventory.yml line 4: ansible_host .* Jinja template"
    ):
        yml('all:\n  hosts:\n    web1:\n      ansible_host: "{{ inventory_hostname }}.lan"\n')


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (ini, ""),
        (ini, "# only comments\n[web]\n[web:vars]\nansible_user=x\n"),
        (yml, "all:\n  children:\n    web:\n"),
        (ssh, "Host *\n  User x\nHost !bastion\n"),
    ],
)
def test_files_without_hosts_are_refused(parse: Parser, text: str) -> None:
    with pytest.raises(InventoryError, match=r": lists no hosts$"):
        parse(text)


def test_empty_text_via_detection_lists_no_hosts() -> None:
    with pytest.raises(InventoryError, match=r"^<inventory>: lists no hosts$"):
        parse_inventory("\n# nothing\n")


def test_one_bad_line_refuses_the_whole_file() -> None:
    text = "[web]\n" + "".join(f"web{i}\n" for i in range(20)) + "bad ansible_port=99999\n"
    with pytest.raises(InventoryError, match="line 22"):
        ini(text)


# --------------------------------------------------------------------------- loading and types


def test_load_inventory_reads_and_detects(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("\ufeff[web]\nweb1 ansible_port=2222\n", encoding="utf-8")
    assert load_inventory(path) == [WorkerSpec("web1", "web1", 2222, pools=("web",))]


def test_load_inventory_error_names_the_file_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.ini"
    path.write_text("[web]\nweb1 ansible_port=70000\n", encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(str(path))
    assert str(info.value) == f'{path} line 2: port "70000" is not a number between 1 and 65535'


def test_load_inventory_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ini"
    with pytest.raises(InventoryError) as info:
        load_inventory(missing)
    assert str(info.value) == f"{missing}: the file does not exist"


def test_load_inventory_directory(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not an inventory file"


def test_load_inventory_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.ini"
    path.write_bytes(b"[web]\nw\xe9b1\n")
    with pytest.raises(InventoryError, match="is not UTF-8 text"):
        load_inventory(path)


def test_inventory_error_is_value_error_and_pickles() -> None:
    error = InventoryError("inv.ini", "something is wrong", 3)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.line, copy.reason) == (
        "inv.ini line 3: something is wrong",
        3,
        "something is wrong",
    )


def test_worker_spec_pools_are_sorted_and_unique() -> None:
    assert WorkerSpec("a", "a", pools=("web", "db", "web")).pools == ("db", "web")
