"""Parse Ansible INI/YAML inventories and OpenSSH ssh_config files into workdeck SSH workers."""

import os
import re

import yaml

from .ansible_ini import parse_ansible_ini
from .ansible_yaml import _yaml_document, parse_ansible_yaml
from .common import InventoryError, WorkerSpec
from .ssh_config import _SSH_LINE, parse_ssh_config

__all__ = [
    "InventoryError",
    "WorkerSpec",
    "load_inventory",
    "parse_ansible_ini",
    "parse_ansible_yaml",
    "parse_inventory",
    "parse_ssh_config",
]


# --------------------------------------------------------------------------- entry points


def load_inventory(path: str | os.PathLike[str]) -> list[WorkerSpec]:
    """Read an inventory file, detect its format and return its workers."""
    source = os.fsdecode(path)
    try:
        # utf-8-sig so files saved by Windows editors with a BOM still parse.
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise InventoryError(source, "the file does not exist") from None
    except IsADirectoryError:
        raise InventoryError(source, "is a directory, not an inventory file") from None
    except PermissionError:
        raise InventoryError(source, "cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise InventoryError(source, "is not UTF-8 text") from None
    except OSError as exc:
        raise InventoryError(source, f"cannot be read ({exc.strerror or exc})") from None
    return parse_inventory(text, source)


def parse_inventory(text: str, source: str = "<inventory>") -> list[WorkerSpec]:
    """Detect whether text is ssh_config, Ansible YAML or Ansible INI and parse it."""
    text = text.removeprefix("\ufeff")
    kind = _detect_format(text)
    if kind == "ssh":
        return parse_ssh_config(text, source)
    if kind == "yaml":
        return parse_ansible_yaml(text, source)
    return parse_ansible_ini(text, source)


# --------------------------------------------------------------------------- format detection

# Enough of OpenSSH's keywords that any real ssh_config starts with one of them.
# fmt: off
_SSH_KEYWORDS = frozenset(
    (
        "host", "match", "include", "hostname", "port", "user", "identityfile",
        "identitiesonly", "identityagent", "certificatefile", "proxyjump", "proxycommand",
        "proxyusefdpass", "forwardagent", "forwardx11", "forwardx11trusted",
        "forwardx11timeout", "serveraliveinterval", "serveralivecountmax",
        "stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile", "hashknownhosts",
        "checkhostip", "updatehostkeys", "verifyhostkeydns", "hostkeyalias",
        "hostkeyalgorithms", "controlmaster", "controlpath", "controlpersist", "compression",
        "loglevel", "logverbose", "syslogfacility", "addkeystoagent", "usekeychain",
        "preferredauthentications", "pubkeyauthentication", "passwordauthentication",
        "kbdinteractiveauthentication", "challengeresponseauthentication",
        "hostbasedauthentication", "gssapiauthentication", "gssapidelegatecredentials",
        "numberofpasswordprompts", "batchmode", "connecttimeout", "connectionattempts",
        "localforward", "remoteforward", "dynamicforward", "gatewayports",
        "clearallforwardings", "exitonforwardfailure", "ciphers", "macs", "kexalgorithms",
        "pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes", "casignaturealgorithms",
        "requiredrsasize", "fingerprinthash", "sendenv", "setenv", "requesttty",
        "remotecommand", "localcommand", "permitlocalcommand", "knownhostscommand",
        "sessiontype", "stdinnull", "forkafterauthentication", "canonicalizehostname",
        "canonicaldomains", "canonicalizefallbacklocal", "canonicalizemaxdots",
        "canonicalizepermittedcnames", "addressfamily", "bindaddress", "bindinterface",
        "ignoreunknown", "visualhostkey", "escapechar", "tcpkeepalive", "tunnel",
        "tunneldevice", "rekeylimit", "revokedhostkeys", "securitykeyprovider",
        "pkcs11provider", "streamlocalbindmask", "streamlocalbindunlink", "xauthlocation",
        "tag", "enableescapecommandline", "obscurekeystroketiming", "channeltimeout",
        "nohostauthenticationforlocalhost",
    )
)
# fmt: on

# These keywords legitimately carry "=" inside their value, so "=" there is no hint of INI.
_SSH_KEYWORDS_WITH_EQUALS = frozenset(
    {"setenv", "proxycommand", "localcommand", "remotecommand", "knownhostscommand", "match"}
)

# "all:" or "web: # comment": a block mapping key, which no INI host line ends with.
_YAML_KEY_LINE = re.compile(r"[^\s=#;\[][^=]*:\s*(?:#.*)?")


def _first_meaningful_line(text: str) -> str | None:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            return line
    return None


def _detect_format(text: str) -> str:
    first = _first_meaningful_line(text)
    if first is None:
        return "ini"
    if _looks_like_ssh_config(first):
        return "ssh"
    if _looks_like_yaml(text, first):
        return "yaml"
    return "ini"


def _looks_like_ssh_config(first: str) -> bool:
    match = _SSH_LINE.fullmatch(first)
    if match is None:
        return False
    keyword, rest = match.group(1).lower(), match.group(2).strip()
    if keyword not in _SSH_KEYWORDS or not rest:
        return False
    # An INI host line such as "user ansible_host=10.0.0.1" also starts with a keyword;
    # its key=value tokens are what tell it apart.
    return keyword in _SSH_KEYWORDS_WITH_EQUALS or "=" not in rest


def _looks_like_yaml(text: str, first: str) -> bool:
    # "[web]" is a valid YAML flow list, so an INI section header must never count as YAML.
    if first.startswith("["):
        return False
    if first == "---" or first == "-" or first.startswith(("- ", "%YAML")):
        return True
    # Decided from the first line so a YAML file with a syntax error still gets a YAML message.
    if _YAML_KEY_LINE.fullmatch(first):
        return True
    try:
        data = _yaml_document(text)
    except yaml.YAMLError:
        return False
    # INI text can at most parse as a flat mapping of scalars; nesting means it was written as YAML.
    return isinstance(data, dict) and any(isinstance(v, (dict, list)) for v in data.values())
