"""The runbook file format: its model, TOML in (strictly validated) and TOML out
(losslessly). Shared by the server and the console's editor; imports no store."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any, Literal

from pydantic import BaseModel, Field

from wire import names
from wire.base import Answer
from wire.errors import InvalidInput

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# Variables a script could not work without, or that would change how it runs.
_RESERVED = {"PATH", "HOME", "IFS", "PS1", "PS2", "PS4", "ENV", "SHELL", "USER", "PWD",
             "OLDPWD", "LD_PRELOAD", "LD_LIBRARY_PATH", "BASH_ENV"}
MAX_TIMEOUT_S = 7 * 86400


class Variable(BaseModel):
    name: str
    default: str | None = None
    sensitive: bool = False
    description: str = ""


class Step(BaseModel):
    name: str
    script: str = ""
    manual: str | None = None
    pool: str | None = None
    timeout: int = 3600
    container: str | None = None
    retries: int = 0
    run_on: Literal["any", "all"] = "any"
    require_all: bool = False  # a "run_on = all" step fails unless every member can take it
    condition: Literal["success", "failure", "always"] = "success"
    # A manual step's "another person": whoever launched the run may not approve it.
    approval: Literal["anyone", "another person"] = "anyone"


class RunbookDef(BaseModel):
    name: str
    description: str = ""
    variables: list[Variable] = Field(default_factory=list)
    pools: dict[str, dict[str, str]] = Field(default_factory=dict)
    steps: list[Step]


# ---------------------------------------------------------------- parsing


class RunbookError(InvalidInput):
    """A runbook file or definition is refused; the message names where and what."""


def _fail(source: str, where: str, what: str) -> RunbookError:
    return RunbookError(f"{source}: {where}: {what}." if where else f"{source}: {what}.")


def _text(value: Any, source: str, where: str, *, allow_scalars: bool = False) -> str:
    if isinstance(value, str):
        return value
    if allow_scalars and isinstance(value, bool):
        return "true" if value else "false"
    if allow_scalars and isinstance(value, int | float):
        return str(value)
    raise _fail(source, where, f"must be a string, not {type(value).__name__}")


def _name(value: str, source: str, where: str, what: str, *, spaces: bool = True,
          limit: int = 100) -> str:
    try:
        return names.name(value, what, spaces=spaces, limit=limit)
    except InvalidInput as exc:
        raise _fail(source, where, str(exc).rstrip(".")) from None


def _check_keys(table: dict[str, Any], allowed: set[str], source: str, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(source, where, f"unknown field {unknown[0]!r} (allowed: "
                    f"{', '.join(sorted(allowed))})")


def parse_toml(text: str, source: str = "<runbook>") -> RunbookDef:
    """Parse and validate a runbook file; refuse it whole with where and what is wrong."""
    # A byte order mark, as some Windows editors write, is not part of the runbook.
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, "", f"not valid TOML ({exc})") from None
    return from_data(data, source)


def from_data(data: dict[str, Any], source: str = "<runbook>") -> RunbookDef:
    _check_keys(data, {"name", "description", "variables", "pools", "steps"}, source, "")
    name = _text(data.get("name", ""), source, "name").strip()
    if not name:
        raise _fail(source, "name", "a runbook needs a name")
    name = _name(name, source, "name", "Runbook name", limit=200)
    description = names.free_text(_text(data.get("description", ""), source,
                                             "description"), 2000)

    variables: list[Variable] = []
    raw_vars = data.get("variables", {})
    if not isinstance(raw_vars, dict):
        raise _fail(source, "variables", "must be a table")
    for var_name, spec in raw_vars.items():
        where = f"variables.{var_name}"
        if not _IDENTIFIER.match(var_name):
            raise _fail(source, where, "a variable name must be a shell identifier "
                        "(letters, digits, _; not starting with a digit)")
        if var_name in _RESERVED or var_name.startswith("WORKDECK_"):
            raise _fail(source, where, "this name is reserved for the shell or Workdeck")
        if isinstance(spec, dict):
            _check_keys(spec, {"default", "sensitive", "description"}, source, where)
            default = spec.get("default")
            sensitive = spec.get("sensitive", False)
            if not isinstance(sensitive, bool):
                raise _fail(source, f"{where}.sensitive", "must be true or false")
            if sensitive and default is not None:
                raise _fail(source, f"{where}.default", "a sensitive variable has no default "
                            "in a file (files end up in repositories); give it at launch")
            variables.append(Variable(
                name=var_name,
                default=None if default is None else _text(default, source, f"{where}.default",
                                                           allow_scalars=True),
                sensitive=sensitive,
                description=names.free_text(_text(spec.get("description", ""), source,
                                                       f"{where}.description"), 500,
                                                 one_line=True)))
        else:
            variables.append(Variable(name=var_name, default=_text(spec, source, where,
                                                                   allow_scalars=True)))

    # The order TOML itself imposes (plain values before sub-tables), so that a file
    # and its export compare equal.
    variables.sort(key=lambda v: v.sensitive or bool(v.description) or v.default is None)

    pools: dict[str, dict[str, str]] = {}
    raw_pools = data.get("pools", {})
    if not isinstance(raw_pools, dict):
        raise _fail(source, "pools", "must be a table of pool variables")
    for pool_var, scoped in raw_pools.items():
        where = f"pools.{pool_var}"
        if not isinstance(scoped, dict) or not scoped:
            raise _fail(source, where, "must map environments to pool names")
        _name(pool_var, source, where, "Pool variable")
        pools[pool_var] = {
            _name(env, source, f"{where}.{env}", "Environment name"):
            _name(_text(pool, source, f"{where}.{env}"), source, f"{where}.{env}", "Pool name")
            for env, pool in scoped.items()}

    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _fail(source, "steps", "a runbook needs at least one [[steps]]")
    steps = [_step(raw, i, source) for i, raw in enumerate(raw_steps, 1)]
    first: dict[str, int] = {}
    for number, step in enumerate(steps, 1):
        # Steps are told apart by name in the log, the console and decisions.
        key = step.name.casefold()
        if key in first:
            raise _fail(source, f"steps[{number}].name", f"{step.name!r} is already the name "
                        f"of steps[{first[key]}]; each step needs its own")
        first[key] = number
    return RunbookDef(name=name, description=description, variables=variables, pools=pools,
                      steps=steps)


def _step(raw: Any, number: int, source: str) -> Step:
    where = f"steps[{number}]"
    if not isinstance(raw, dict):
        raise _fail(source, where, "must be a table")
    _check_keys(raw, set(Step.model_fields), source, where)
    name = _text(raw.get("name", ""), source, f"{where}.name").strip()
    if not name:
        raise _fail(source, f"{where}.name", "every step needs a name")
    name = _name(name, source, f"{where}.name", "Step name", limit=200)
    script = raw.get("script")
    manual = raw.get("manual")
    if (script is None) == (manual is None):
        raise _fail(source, where, "a step has either a script or manual instructions")
    values: dict[str, Any] = {"name": name}
    if script is not None:
        values["script"] = _text(script, source, f"{where}.script")
        if not values["script"].strip():
            raise _fail(source, f"{where}.script", "is empty")
        try:
            names.script_text(values["script"], "the script")
        except InvalidInput as exc:
            raise _fail(source, f"{where}.script", str(exc).rstrip(".")) from None
    else:
        values["manual"] = names.free_text(_text(manual, source, f"{where}.manual"),
                                                4000)
        if not values["manual"]:
            raise _fail(source, f"{where}.manual", "is empty")
    for key, what, spaces in (("pool", "Pool name", True), ("container", "Image", False)):
        if key in raw:
            text = _text(raw[key], source, f"{where}.{key}").strip()
            values[key] = _name(text, source, f"{where}.{key}", what, spaces=spaces) \
                if text else None
    timeout = raw.get("timeout", 3600)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or \
            not 1 <= timeout <= MAX_TIMEOUT_S:
        raise _fail(source, f"{where}.timeout", f"must be whole seconds from 1 to "
                    f"{MAX_TIMEOUT_S}")
    retries = raw.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        raise _fail(source, f"{where}.retries", "must be a number from 0 to 10")
    run_on = raw.get("run_on", "any")
    if run_on not in ("any", "all"):
        raise _fail(source, f"{where}.run_on", f"{run_on!r} is not \"any\" or \"all\"")
    require_all = raw.get("require_all", False)
    if not isinstance(require_all, bool):
        raise _fail(source, f"{where}.require_all", "must be true or false")
    if require_all and run_on != "all":
        raise _fail(source, f"{where}.require_all", "applies to a step with run_on = \"all\"")
    condition = raw.get("condition", "success")
    if condition not in ("success", "failure", "always"):
        raise _fail(source, f"{where}.condition",
                    f"{condition!r} is not \"success\", \"failure\" or \"always\"")
    if manual is not None and (raw.get("container") or run_on == "all"):
        raise _fail(source, where, "a manual step runs on no worker (no container, run_on)")
    approval = raw.get("approval", "anyone")
    if approval not in ("anyone", "another person"):
        raise _fail(source, f"{where}.approval",
                    f"{approval!r} is not \"anyone\" or \"another person\"")
    if manual is None and approval != "anyone":
        raise _fail(source, f"{where}.approval", "only a manual step is approved")
    return Step(**values, timeout=timeout, retries=retries, run_on=run_on,
                require_all=require_all, condition=condition, approval=approval)


# ---------------------------------------------------------------- export


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _string(value: str) -> str:
    # A multi-line literal keeps scripts readable; anything it cannot hold exactly
    # (''' inside, a trailing quote, a character that is not visible) falls back to
    # an escaped string, so an exported file shows no invisible or bidirectional text.
    visible = all(c.isprintable() or c in "\n\t" for c in value)
    if "\n" in value and "'''" not in value and not value.endswith("'") and visible:
        return "'''\n" + value + "'''"
    quoted = json.dumps(value, ensure_ascii=False)
    if visible:
        return quoted
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\u{ord(c):04x}"
                   if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in quoted)


def to_toml(runbook: RunbookDef) -> str:
    """TOML that imports back to exactly this runbook."""
    out = [f"name = {_string(runbook.name)}",
           f"description = {_string(runbook.description)}"]
    plain = [v for v in runbook.variables if not v.sensitive and not v.description
             and v.default is not None]
    tables = [v for v in runbook.variables if v not in plain]
    if plain:
        out += ["", "[variables]"]
        out += [f"{_key(v.name)} = {_string(v.default or '')}" for v in plain]
    for var in tables:
        out += ["", f"[variables.{_key(var.name)}]"]
        if var.default is not None:
            out.append(f"default = {_string(var.default)}")
        if var.sensitive:
            out.append("sensitive = true")
        if var.description:
            out.append(f"description = {_string(var.description)}")
    for pool_var, scoped in runbook.pools.items():
        out += ["", f"[pools.{_key(pool_var)}]"]
        out += [f"{_key(env)} = {_string(pool)}" for env, pool in scoped.items()]
    defaults = Step(name="x")
    for step in runbook.steps:
        out += ["", "[[steps]]", f"name = {_string(step.name)}"]
        if step.manual is not None:
            out.append(f"manual = {_string(step.manual)}")
        for field in ("pool", "container", "timeout", "retries", "run_on", "require_all",
                      "condition", "approval"):
            value = getattr(step, field)
            if value is None or value == getattr(defaults, field):
                continue
            if isinstance(value, bool):
                out.append(f"{field} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                out.append(f"{field} = {value}")
            else:
                out.append(f"{field} = {_string(value)}")
        if step.manual is None:
            out.append(f"script = {_string(step.script)}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- on the wire


class RunbookUpload(BaseModel):
    toml: str
    source: str = Field("<runbook>", description="The file's name, for refusals.")
    # The runbook an editor opened ("" for a new one): saving under any other name that
    # is taken is refused, never a silent overwrite. None (an import): same name replaces.
    replaces: str | None = None


class RunbookImport(BaseModel):
    files: list[RunbookUpload]


class RunbookSummary(Answer):
    name: str
    description: str
    steps: int = Field(description="How many steps it has.")
    variables: list[str] = Field(description="Its variables' names.")
    updated_at: str | None
