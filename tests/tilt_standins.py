"""Stand-ins for Tilt's Tiltfile builtins that reject what Tilt rejects.

Written from Tilt's source at tag v0.37.6 (tilt-dev/tilt commit
76a6dd7d311178fe864baa22ce63a2f053764efc; `internal/tiltfile` and the extension controllers are
unchanged from there to 2fa1737aa59b, master of 2026-08-08), not copied from it:

- argument lists and their order: each builtin's `UnpackArgs` list (`internal/tiltfile/*.go`,
  `io/`, `os/`, `probe/`, `links/`, `watch/`, `print/`, `encoding/`, `k8scontext/`,
  `updatesettings/`, `v1alpha1/types.go`), checked against the `internal/tiltfile/api/**.py` stubs;
- how arguments are matched: go.starlark's `UnpackArgs` (`vendor/go.starlark.net/starlark/unpack.go`:
  positional then keyword, "?" optional and every later parameter optional too, "??" treats None
  as absent, the "(did you mean ...?)" hint from `internal/spell`);
- the kinds of value (`internal/tiltfile/value/`): `Name`, `LabelSet` (Kubernetes label rules),
  `StringStringMap`, `StringList`, `StringOrStringList`, `LocalPath(List)`, `Stringable`
  (a Blob counts as a string there, not where a plain `string` is wanted), `Optional`, TriggerMode,
  Probe/ExecAction/HTTPGetAction/TCPSocketAction, links, commands (`ValueToHostCmd`);
- Blob (`io/blob.go`): `read_file`, `kustomize`, `encode_yaml(_stream)`, `blob` return one, not a str;
- paths (`starkit/path.go`, `os/os.go`): relative to the directory of the Tiltfile being executed
  (the main Tiltfile while it calls a function defined in an extension); `os.path.*` are Go's
  `path/filepath` (`join('/a', '/b')` is `/a/b`), `relpath(targpath, basepath)`;
- `load()` (`starkit/environment.go`): a path relative to the loading file, cached by path,
  "Circular load", errors as "cannot load X: ..."; `ext://NAME` (`tiltextension/plugin.go`,
  `controllers/core/extensionrepo/reconciler.go`, `controllers/core/extension/reconciler.go`,
  `pkg/apis/core/v1alpha1/extensionrepo_types.go`): the extension and its repo registered by
  `v1alpha1.extension(_repo)` or the defaults, `file://` repos absolute and without `ref`;
- after the main Tiltfile (`tiltfile_state.go`): k8s_resource() must name a workload of
  k8s_yaml(), resource names are unique, unknown resource_deps are a warning.

Error messages are Tilt's text (raised as TiltError; through Starlark they read
"error: TiltError: <Tilt's message>").

What is not Tilt: the interpreter is starlark-rust (stricter: no top-level if/for); a builtin
that is not here does not exist (it fails as an undefined name, never passes); Tilt values are
opaque here: `type()` and `str()` know them, but a Blob is always truthy and `'%s' % blob` does
not give its text (use `str(blob)`, as in Tilt); attribute access on a Probe/link fails here
(Tilt has struct fields); a method call on a Blob fails with starlark-rust's "has no attribute"
(Tilt: "blob has no .splitlines field or method"); https extension repos are not downloaded
(`Tilt(downloads={url: directory})` says what a download would give); YAML text is PyYAML's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

import starlark  # starlark-pyo3

TILT_TAG = "v0.37.6"
TILT_COMMIT = "76a6dd7d311178fe864baa22ce63a2f053764efc"


class TiltError(Exception):
    """A Tiltfile error, with Tilt's message."""


class _Bad(Exception):
    """An Unpack error (UnpackArgs prefixes it with the function and parameter)."""


class _NotExist(TiltError):
    """os.IsNotExist(err)."""


# --- Starlark values as Tilt's builtins see them ----------------------------------------------

@dataclass
class Struct:
    fields: dict


@dataclass
class Range:
    items: list


@dataclass
class Unhandled:
    """A value these stand-ins cannot look into (a function, ...): only its type is known."""
    type: str


class TiltValue:
    TYPE = "?"      # Starlark type()
    GO_TYPE = "?"   # Go %T, as some of Tilt's messages print it

    def starlark_str(self) -> str:
        return f"<{self.TYPE}>"


@dataclass(eq=False)
class Blob(TiltValue):
    text: str
    source: str
    TYPE = "blob"
    GO_TYPE = "io.Blob"

    def starlark_str(self) -> str:
        return self.text


@dataclass(eq=False)
class TriggerMode(TiltValue):
    name: str
    TYPE = "TriggerMode"
    GO_TYPE = "tiltfile.triggerMode"

    def starlark_str(self) -> str:
        return self.name


TRIGGER_MODE_AUTO = TriggerMode("TRIGGER_MODE_AUTO")
TRIGGER_MODE_MANUAL = TriggerMode("TRIGGER_MODE_MANUAL")


@dataclass(eq=False)
class ExecAction(TiltValue):
    command: list
    TYPE = "ExecAction"
    GO_TYPE = "probe.ExecAction"


@dataclass(eq=False)
class HTTPGetAction(TiltValue):
    port: int
    host: str = ""
    scheme: str = ""
    path: str = ""
    TYPE = "HTTPGetAction"
    GO_TYPE = "probe.HTTPGetAction"


@dataclass(eq=False)
class TCPSocketAction(TiltValue):
    port: int
    host: str = ""
    TYPE = "TCPSocketAction"
    GO_TYPE = "probe.TCPSocketAction"


@dataclass(eq=False)
class Probe(TiltValue):
    initial_delay_secs: int = 0
    timeout_secs: int = 0
    period_secs: int = 0
    success_threshold: int = 0
    failure_threshold: int = 0
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    TYPE = "Probe"
    GO_TYPE = "probe.Probe"


@dataclass(eq=False)
class Link(TiltValue):
    url: str
    name: str = ""
    TYPE = "struct"   # a starlarkstruct.Struct built with constructor "link"
    GO_TYPE = "links.Link"


@dataclass(eq=False)
class CustomBuild(TiltValue):
    ref: str
    TYPE = "custom_build"
    GO_TYPE = "*tiltfile.customBuild"


_SCALARS = {type(None): "NoneType", bool: "bool", int: "int", float: "float", str: "string",
            list: "list", tuple: "tuple", dict: "dict"}
_GO_TYPES = {"NoneType": "starlark.NoneType", "bool": "starlark.Bool", "int": "starlark.Int",
             "float": "starlark.Float", "string": "starlark.String", "list": "*starlark.List",
             "tuple": "starlark.Tuple", "dict": "*starlark.Dict", "struct": "*starlarkstruct.Struct",
             "range": "starlark.rangeValue", "function": "*starlark.Function"}


def sl_type(v: Any) -> str:
    """type(v) in Tilt's Starlark."""
    if isinstance(v, TiltValue):
        return v.TYPE
    if isinstance(v, Struct):
        return "struct"
    if isinstance(v, Range):
        return "range"
    if isinstance(v, Unhandled):
        return v.type
    return _SCALARS[type(v)]


def go_type(v: Any) -> str:
    """Go's %T of the value."""
    if isinstance(v, TiltValue):
        return v.GO_TYPE
    return _GO_TYPES.get(sl_type(v), "starlark.Value")


def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def sl_str(v: Any) -> str:
    """v.String() in go.starlark (what %v and '%s' print)."""
    if isinstance(v, TiltValue):
        return v.starlark_str()
    t = sl_type(v)
    if t == "string":
        return go_quote(v)
    if t in ("bool", "NoneType"):
        return str(v)
    if t in ("int", "float"):
        return repr(v)
    if t == "list":
        return "[" + ", ".join(sl_str(x) for x in v) + "]"
    if t == "tuple":
        return "(" + ", ".join(sl_str(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if t == "dict":
        return "{" + ", ".join(f"{sl_str(k)}: {sl_str(x)}" for k, x in v.items()) + "}"
    if t == "struct":
        return "struct(" + ", ".join(f"{k} = {sl_str(x)}" for k, x in v.fields.items()) + ")"
    return f"<{t}>"


def as_string(v: Any) -> str | None:
    """starlark.AsString: only a string."""
    return v if type(v) is str else None


def as_string_implicit(v: Any) -> str | None:
    """Tilt's value.AsString: a string or a Blob."""
    return v.text if isinstance(v, Blob) else as_string(v)


def _sequence_items(v: Any) -> list | None:
    """The elements if v is a starlark.Sequence (list, tuple, dict keys, range), else None."""
    if type(v) in (list, tuple):
        return list(v)
    if type(v) is dict:
        return list(v)
    if isinstance(v, Range):
        return list(v.items)
    return None


def value_or_sequence(v: Any) -> list:
    """value.ValueOrSequenceToSlice: a sequence's elements, None -> [], anything else -> [v]."""
    items = _sequence_items(v)
    if items is not None:
        return items
    return [] if v is None or v is _ABSENT else [v]


def sequence_to_string_slice(seq: Any) -> list[str]:
    """value.SequenceToStringSlice: every element a string (a Blob is not)."""
    out = []
    for v in _sequence_items(seq) or []:
        if type(v) is not str:
            raise _Bad(f"'{sl_str(v)}' is a {go_type(v)}, not a string")
        out.append(v)
    return out


# --- Go's path/filepath (Unix) -----------------------------------------------------------------

def go_clean(p: str) -> str:
    if p == "":
        return "."
    rooted = p.startswith("/")
    out: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    s = "/".join(out)
    if rooted:
        return "/" + s
    return s or "."


def go_join(*elems: str) -> str:
    """filepath.Join: the non-empty elements joined with '/', cleaned; '/a', '/b' -> '/a/b'."""
    parts = [e for e in elems if e != ""]
    return go_clean("/".join(parts)) if parts else ""


def go_dir(p: str) -> str:
    return go_clean(p[: p.rfind("/") + 1])


def go_base(p: str) -> str:
    if p == "":
        return "."
    p = p.rstrip("/")
    if p == "":
        return "/"
    return p[p.rfind("/") + 1:]


def go_rel(basepath: str, targpath: str) -> str:
    base, targ = go_clean(basepath), go_clean(targpath)
    if base == targ:
        return "."
    if base.startswith("/") != targ.startswith("/"):
        raise TiltError(f"Rel: can't make {targpath} relative to {basepath}")
    bparts = [x for x in base.split("/") if x and base != "."]
    tparts = [x for x in targ.split("/") if x and targ != "."]
    n = 0
    while n < min(len(bparts), len(tparts)) and bparts[n] == tparts[n]:
        n += 1
    if n < len(bparts) and bparts[n] == "..":
        raise TiltError(f"Rel: can't make {targpath} relative to {basepath}")
    return "/".join([".."] * (len(bparts) - n) + tparts[n:]) or "."


def go_is_child(directory: str, path: str) -> bool:
    directory = go_clean(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def go_read_file(p: str) -> str:
    """os.ReadFile with Go's error text."""
    try:
        return Path(p).read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        raise _NotExist(f"open {p}: no such file or directory") from None
    except IsADirectoryError:
        raise TiltError(f"read {p}: is a directory") from None
    except NotADirectoryError:
        raise TiltError(f"open {p}: not a directory") from None
    except PermissionError:
        raise TiltError(f"open {p}: permission denied") from None


# --- go.starlark UnpackArgs ----------------------------------------------------------------------

_ABSENT = object()


def _levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(prev + (ca != cb), row[j - 1] + 1, row[j] + 1)
    return row[-1]


def _nearest(x: str, candidates: list[str]) -> str:
    """internal/spell.Nearest: case and underscores ignored, fewer than half the letters wrong."""
    fold = lambda s: s.replace("_", "").lower()  # noqa: E731
    best, best_d = "", (len(fold(x)) + 1) // 2
    for c in candidates:
        d = _levenshtein(fold(x), fold(c))
        if d < best_d:
            best, best_d = c, d
    return best


def unpack_args(fn: str, args: tuple, kwargs: list, *pairs: Any, given: dict | None = None) -> dict:
    """go.starlark's UnpackArgs over (name, unpacker) pairs; returns {name: unpacked} for what was
    given (and fills `given` with the values as passed). A name ending in '?' is optional, and so
    is every one after it; '??' also takes None as not given. An unpacker raises _Bad, reported
    as "FN: for parameter NAME: ..."."""
    names, unpackers = list(pairs[0::2]), list(pairs[1::2])
    plain = [n.rstrip("?") for n in names]
    out: dict = {}
    defined: set[int] = set()

    def one(i: int, value: Any, shown: str) -> None:
        if given is not None:
            given[plain[i]] = value
        if names[i].endswith("??") and value is None:
            return
        try:
            out[plain[i]] = unpackers[i](value)
        except _Bad as e:
            raise TiltError(f"{fn}: for parameter {shown}: {e}") from None

    if len(args) > len(names):
        raise TiltError(f"{fn}: got {len(args)} arguments, want at most {len(names)}")
    for i, value in enumerate(args):
        defined.add(i)
        one(i, value, plain[i])
    for key, value in kwargs:
        if key not in plain:
            msg = f"{fn}: unexpected keyword argument {key}"
            # go.starlark collects the candidates with `for i := 0; i < nparams; i += 2`
            # over the name/pointer pairs: only the first half of the parameters is suggested.
            hint = _nearest(key, [names[i // 2].rstrip("?") for i in range(0, len(names), 2)])
            raise TiltError(f"{msg} (did you mean {hint}?)" if hint else msg)
        i = plain.index(key)
        if i in defined:
            raise TiltError(f"{fn}: got multiple values for keyword argument {key}")
        defined.add(i)
        one(i, value, key)
    for i, name in enumerate(names):
        if name.endswith("?"):
            break
        if i not in defined:
            raise TiltError(f"{fn}: missing argument for {name}")
    return out


# --- the kinds of argument (go.starlark's and Tilt's Unpackers) --------------------------------

def k_value(v: Any) -> Any:  # starlark.Value: anything
    return v


def k_string(v: Any) -> str:  # *string, starlark.String
    if type(v) is not str:
        raise _Bad(f"got {sl_type(v)}, want string")
    return v


def k_bool(v: Any) -> bool:
    if type(v) is not bool:
        raise _Bad(f"got {sl_type(v)}, want bool")
    return v


def k_int(v: Any) -> int:  # *int (64-bit)
    if type(v) is not int:
        raise _Bad(f"got {sl_type(v)}, want int")
    if not -(2 ** 63) <= v < 2 ** 63:
        raise _Bad(f"{v} out of range (want value in signed 64-bit range)")
    return v


def k_int32(v: Any) -> int:  # value.Int32
    if type(v) is not int:
        raise _Bad(f"got {sl_type(v)}, want int")
    if not -(2 ** 31) <= v < 2 ** 31:
        raise _Bad(f"value out of range for int32: {v}")
    return v


def k_list(v: Any) -> list:  # *starlark.List
    if type(v) is not list:
        raise _Bad(f"got {sl_type(v)}, want list")
    return v


def k_sequence(v: Any) -> Any:  # starlark.Sequence
    if _sequence_items(v) is None:
        raise _Bad(f"got {sl_type(v)}, want starlark.Sequence")
    return v


def k_stringable(v: Any) -> str:  # value.Stringable
    s = as_string_implicit(v)
    if s is None:
        raise _Bad(f"Value should be convertible to string, but is type {sl_type(v)}")
    return s


def k_string_string_map(v: Any) -> dict:  # value.StringStringMap
    if v is None:
        return {}
    if type(v) is not dict:
        raise _Bad(f"expected dict, got {go_type(v)}")
    out = {}
    for key, val in v.items():
        k, s = as_string_implicit(key), as_string_implicit(val)
        if k is None:
            raise _Bad(f"key is not a string: {go_type(key)} ({sl_str(key)})")
        if s is None:
            raise _Bad(f"value is not a string: {go_type(val)} ({sl_str(val)})")
        out[k] = s
    return out


def k_string_list(v: Any) -> list[str]:  # value.StringList
    if v is None:
        return []
    if type(v) not in (list, tuple):
        raise _Bad(f"value should be a List or Tuple of strings, but is of type {sl_type(v)}")
    out = []
    for item in v:
        s = as_string_implicit(item)
        if s is None:
            raise _Bad(f"value should contain only strings, but element {go_quote(sl_str(item))} was of type {sl_type(item)}")
        out.append(s)
    return out


def k_string_or_string_list(v: Any) -> list[str]:  # value.StringOrStringList
    s = as_string_implicit(v)
    if s is not None:
        return [s]
    if v is None:
        return []
    if type(v) not in (list, tuple):
        raise _Bad(f"value should be a string or List or Tuple of strings, but is of type {sl_type(v)}")
    out = []
    for item in v:
        s = as_string_implicit(item)
        if s is None:
            raise _Bad(f"list should contain only strings, but element {go_quote(sl_str(item))} was of type {sl_type(item)}")
        out.append(s)
    return out


def _path_segment_name_errors(s: str) -> list[str]:
    if s in (".", ".."):
        return [f"may not be '{s}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in s]


def k_name(v: Any) -> str:  # value.Name: a Kubernetes path segment name
    s = as_string_implicit(v)
    if s is None:
        raise _Bad(f"Value should be convertible to string, but is type {sl_type(v)}")
    errs = _path_segment_name_errors(s)
    if errs:
        raise _Bad(f"invalid value {go_quote(s)}: {errs[0]}")
    return s


_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                  "with an alphanumeric character")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
                    "or '.', and must start and end with an alphanumeric character")
_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + "(\\." + _DNS1123_LABEL + ")*"
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric character")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """k8s.io/apimachinery content.RegexError, word for word."""
    return msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) + f"regex used for validation is '{fmt}')"


def _qualified_name_errors(value: str) -> list[str]:
    """content.IsLabelKey (IsQualifiedName): [prefix/]name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) > 2:
        return ["a valid label key " + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 bytes")
            if not re.fullmatch(_DNS1123_SUBDOMAIN, prefix):
                errs.append("prefix part " + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN, "example.com"))
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not re.fullmatch(_LABEL_KEY_FMT, name):
        errs.append("name part " + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def _label(v: Any) -> str:  # value.LabelValue
    s = as_string_implicit(v)
    if s is None:
        raise _Bad(f"Value should be convertible to string, but is type {sl_type(v)}")
    errs = _qualified_name_errors(s)
    if errs:
        raise _Bad(f"Invalid label {go_quote(s)}: {', '.join(errs)}")
    errs = ([f"must be no more than 63 bytes"] if len(s) > 63 else []) + (
        [] if re.fullmatch(f"({_LABEL_KEY_FMT})?", s) else
        [_regex_error(_LABEL_VALUE_MSG, f"({_LABEL_KEY_FMT})?", "MyValue", "my_value", "12345")])
    if errs:
        raise _Bad(f"Invalid label {go_quote(s)}: {', '.join(errs)}")
    if "/" in s:
        raise _Bad(f"Invalid label {go_quote(s)}: cannot contain /")
    return s


def k_label_set(v: Any) -> list[str]:  # value.LabelSet
    if type(v) is str:
        return [_label(v)]
    if v is None:
        return []
    if type(v) not in (list, tuple):
        raise _Bad(f"value should be a label or List or Tuple of labels, but is of type {sl_type(v)}")
    return [_label(item) for item in v]


def k_trigger_mode(v: Any) -> TriggerMode:
    if not isinstance(v, TriggerMode):
        raise _Bad(f"got {sl_type(v)}, want TriggerMode")
    return v


def _k_tilt(cls: type) -> Callable[[Any], Any]:
    """The probe package's Unpack: None, or exactly this Tilt type."""
    def unpack(v: Any) -> Any:
        if v is None or isinstance(v, cls):
            return v
        raise _Bad(f"got {go_type(v)}, want {cls.TYPE}")
    return unpack


k_probe, k_exec_action, k_http_get_action, k_tcp_socket_action = (
    _k_tilt(Probe), _k_tilt(ExecAction), _k_tilt(HTTPGetAction), _k_tilt(TCPSocketAction))


def _optional(kind: str) -> Callable[[Any], Any]:
    """value.Optional[starlark.String / starlark.Bool]."""
    go = {"string": "starlark.String", "bool": "starlark.Bool"}[kind]

    def unpack(v: Any) -> Any:
        if v is None:
            return None
        if sl_type(v) != kind:
            raise _Bad(f"expected {go} or None, got {go_type(v)}")
        return v
    return unpack


k_optional_string, k_optional_bool = _optional("string"), _optional("bool")


def _url_with_scheme(url: str) -> str:
    """links.parseAndMaybeAddScheme: Go's url.Parse, then http:// if there is no scheme."""
    if url == "":
        raise TiltError(f"validating URL {go_quote(url)}: url empty")
    if url.startswith(":"):
        raise TiltError(f"validating URL {go_quote(url)}: parse {go_quote(url)}: missing protocol scheme")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url):
        return url
    if ":" in url.split("/")[0].split("?")[0]:
        raise TiltError(f"validating URL {go_quote(url)}: parse {go_quote(url)}: first path segment in URL cannot contain colon")
    return "http://" + url


def k_link_list(v: Any) -> list[Link]:  # links.LinkList
    out = []
    for item in value_or_sequence(v):
        if type(item) is str:
            try:
                out.append(Link(_url_with_scheme(item)))
            except TiltError as e:
                raise _Bad(str(e)) from None
        elif isinstance(item, Link):
            out.append(item)
        else:
            raise _Bad(f"`Want a string, a link, or a sequence of these; found {sl_str(item)} (type: {go_type(item)})")
    return out


def k_string_sequence(v: Any) -> list[str]:  # value.StringSequence
    if _sequence_items(v) is None:
        raise _Bad(f"'{sl_str(v)}' is a {go_type(v)}, not a sequence")
    return sequence_to_string_slice(v)


def k_pod_readiness(v: Any) -> str:
    s = as_string_implicit(v)
    if s is None:
        raise _Bad(f"Must be a string. Got: {sl_type(v)}")
    if s not in ("ignore", "wait", "succeeded", ""):
        raise _Bad(f"Invalid value. Allowed: {{ignore, wait}}. Got: {s}")
    return s


def k_discovery_strategy(v: Any) -> str:
    s = as_string_implicit(v)
    if s is None:
        raise _Bad(f"Must be a string. Got: {sl_type(v)}")
    if s not in ("", "default", "selectors-only"):
        raise _Bad('Invalid. Must be one of: "default", "selectors-only"')
    return s


# --- docker references (github.com/distribution/reference, as Tilt's container.ParseNamed) ---

_ALNUM = "[a-z0-9]+"
_SEPARATOR = "(?:[._]|__|[-]+)"
_PATH_COMPONENT = f"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = f"(?:{_DOMAIN_COMPONENT}(?:\\.{_DOMAIN_COMPONENT})*|\\[(?:[a-fA-F0-9:]+)\\])(?::[0-9]+)?"
_NAME = f"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(f"^({_NAME})(?::([\\w][\\w.-]{{0,127}}))?"
                        f"(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}}))?$", re.ASCII)


def parse_image_ref(s: str) -> str:
    """reference.ParseNormalizedNamed; returns the normalized name[:tag]."""
    if re.fullmatch("[a-f0-9]{64}", s):
        raise TiltError(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    first, slash, rest = s.partition("/")
    if not slash:
        domain, remainder = "docker.io", "library/" + s
    elif first == "index.docker.io":
        domain, remainder = "docker.io", rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = "docker.io", s
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise TiltError(f"invalid reference format: repository name ({remote}) must be lowercase")
    full = domain + "/" + remainder
    m = _REFERENCE.match(full)
    if not m:
        if _REFERENCE.match(full.lower()):
            raise TiltError("invalid reference format: repository name must be lowercase")
        raise TiltError("invalid reference format")
    return m.group(1) + (":" + m.group(2) if m.group(2) else "")


# --- YAML and JSON as Tilt's encoding package does them ----------------------------------------

class _Loader(yaml.SafeLoader):
    """YAML decoded to JSON-compatible data (Tilt goes through JSON): no timestamps."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _jsonish(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonish(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonish(x) for x in v]
    return v


def decode_yaml_docs(text: str) -> list:
    try:
        return [_jsonish(d) for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as e:
        raise TiltError(f"error parsing YAML: {e}") from None


def to_structured(v: Any) -> Any:
    """convertStarlarkToStructuredData: bool, string, int, float, list, dict (string keys), None."""
    t = sl_type(v)
    if t in ("bool", "string", "int", "float", "NoneType"):
        return v
    if t == "list":
        return [to_structured(x) for x in v]
    if t == "dict":
        out = {}
        for key, x in v.items():
            k = to_structured(key)
            if type(k) is not str:
                raise TiltError(f"error converting object from starlark: only string keys are supported in maps. "
                                f"found key '{sl_str(key)}' of type {type(k).__name__}")
            out[k] = to_structured(x)
        return out
    raise TiltError(f"error converting object from starlark: unable to convert from starlark value, unsupported type {go_type(v)}")


def kustomize_build(path: Path) -> str:
    """`kubectl kustomize` when kubectl is here; else the subset deploy/k8s uses
    (resources + namespace + labels without selectors)."""
    if shutil.which("kubectl"):
        return subprocess.run(["kubectl", "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    docs = []
    for res in k["resources"]:
        for doc in yaml.safe_load_all((path / res).read_text()):
            if doc["kind"] != "Namespace" and "namespace" in k:
                doc["metadata"]["namespace"] = k["namespace"]
            for group in k.get("labels", []):
                doc["metadata"].setdefault("labels", {}).update(group["pairs"])
            docs.append(doc)
    return yaml.safe_dump_all(docs)


# --- the evaluator -----------------------------------------------------------------------------

@dataclass
class Call:
    fn: str
    args: tuple
    kwargs: dict
    file: Path          # the Tiltfile executing when the call was made
    params: dict        # the arguments by parameter name (positional ones named), as given


_BUILTINS_ID = "<tilt builtins>"
_EXECUTING = object()

# Starlark-side plumbing. Every Tilt builtin is a Starlark function that hands its arguments to
# Python tagged with their Starlark types (starlark-pyo3 passes values as JSON: a tuple would
# arrive as a list, a struct as a dict, and a function not at all).
_PRELUDE_A = "__sl_str = str\n__sl_type = type\n"
_PRELUDE_B = '''
def __tag(v):
    t = __sl_type(v)
    if t in ("string", "int", "bool", "float", "NoneType", "opaque_python_object"):
        return v
    if t in ("list", "tuple", "range"):
        return {"t": t, "v": [__tag(x) for x in v]}
    if t == "dict":
        return {"t": t, "v": [[__tag(k), __tag(x)] for k, x in v.items()]}
    if t == "struct":
        return {"t": t, "v": {k: __tag(getattr(v, k)) for k in dir(v)}}
    return {"t": t, "v": None}

def __call(name, args, kwargs):
    return __py_call(name, [__tag(a) for a in args], [[k, __tag(x)] for k, x in kwargs.items()])

def str(x):
    if __sl_type(x) == "opaque_python_object":
        return __py_str(x)
    return __sl_str(x)

def type(x):
    if __sl_type(x) == "opaque_python_object":
        return __py_type(x)
    return __sl_type(x)

def print(*args, sep = " "):
    __py_print(sep.join([str(a) for a in args]))
'''


def _decode(x: Any) -> Any:
    if isinstance(x, dict):
        t, v = x["t"], x["v"]
        if t == "list":
            return [_decode(e) for e in v]
        if t == "tuple":
            return tuple(_decode(e) for e in v)
        if t == "range":
            return Range([_decode(e) for e in v])
        if t == "dict":
            return {_decode(k): _decode(e) for k, e in v}
        if t == "struct":
            return Struct({k: _decode(e) for k, e in v.items()})
        return Unhandled(t)
    return x


def _encode(v: Any) -> Any:
    if isinstance(v, TiltValue):
        return starlark.OpaquePythonObject(v)
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    return v


def _sanitize_name(name: str) -> str:
    """apis.SanitizeName (without the hash of over-long names)."""
    if name in (".", ".."):
        return name.replace(".", "_")
    return re.sub("[/%]", "_", name)


_IP = r"(([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\.){3}([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])"
_HOSTNAME = r"(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])"
_VALID_HOST = f"{_IP}|{_HOSTNAME}"
_WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob", "Pod"}


@dataclass
class Tilt:
    """Evaluates a Tiltfile (and whatever it loads) the way `tilt up` would load it, recording
    every builtin call."""

    main: Path
    env: dict = field(default_factory=dict)             # os.getenv overrides
    downloads: dict = field(default_factory=dict)       # https extension repo URL -> local directory
    kube_context: str = "kind-kind"
    kube_namespace: str = "default"
    calls: list[Call] = field(default_factory=list)
    read_files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # warn() and what Tilt logs as a warning
    printed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._main = go_clean(os.path.abspath(self.main))
        self._stack: list[str] = []
        self._loaded: dict = {}
        self._objects: dict = {"extensionrepos": {}, "extensions": {}}
        self._local: dict = {}
        self._k8s_entities: list[dict] = []
        self._k8s_resources: list[dict] = []
        self._images: set[str] = set()
        self._builtins = None

    # -- queries --
    def called(self, fn: str) -> list[Call]:
        return [c for c in self.calls if c.fn == fn]

    def local_resources(self) -> dict[str, dict]:
        return {c.params["name"]: c.params for c in self.called("local_resource")}

    # -- evaluation --
    @classmethod
    def _dialect(cls):
        d = starlark.Dialect.standard()
        d.enable_load_reexport = False  # go.starlark: a load() binds in the loading file only
        return d

    _GLOBALS = starlark.Globals.extended_by([starlark.LibraryExtension.StructType])

    def run(self, source: str | None = None) -> "Tilt":
        """Execute the main Tiltfile (its text, or `source` for a virtual one), then check what
        Tilt checks once it has run (resource names, k8s_resource workloads)."""
        self._builtins = self._make_builtins()
        text = go_read_file(self._main) if source is None else source
        self._exec(self._main, text)
        self._assemble()
        return self

    def _exec(self, path: str, source: str):
        module = starlark.Module()
        module["__file__"] = path
        module["__name__"] = "__main__" if path == self._main else go_base(path)
        loader = starlark.FileLoader(self._load)
        names = ", ".join(repr(n) for n in self._builtin_names)
        starlark.eval(module, starlark.parse("<tilt>", f"load({_BUILTINS_ID!r}, {names})", self._dialect()),
                      self._GLOBALS, loader)
        self.read_files.append(Path(path))
        self._stack.append(path)
        try:
            starlark.eval(module, starlark.parse(path, source, self._dialect()), self._GLOBALS, loader)
        finally:
            self._stack.pop()
        return module

    def _load(self, module_id: str):
        if module_id == _BUILTINS_ID:
            return self._builtins
        try:
            if module_id.startswith("ext://"):
                path = self._extension_path(module_id[len("ext://"):])
            else:
                path = self._abs(module_id)
            entry = self._loaded.get(path)
            if entry is _EXECUTING:
                raise TiltError(f"Circular load: {path}")
            if entry is None:
                try:
                    source = go_read_file(path)
                except TiltError as e:
                    raise TiltError(f"error reading file {path}: {e}") from None
                self._loaded[path] = _EXECUTING
                try:
                    self._loaded[path] = self._exec(path, source).freeze()
                except BaseException:
                    self._loaded.pop(path)
                    raise
            return self._loaded[path]
        except TiltError as e:
            raise TiltError(f"cannot load {module_id}: {e}") from None

    def _cwd(self) -> str:
        return go_dir(self._stack[-1])

    def _abs(self, p: str) -> str:
        """starkit.AbsPath: relative to the directory of the Tiltfile being executed."""
        return p if p.startswith("/") else go_join(self._cwd(), p)

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def _record_read(self, p: str) -> None:
        self.read_files.append(Path(p))

    # -- the builtins module --
    def _make_builtins(self):
        b = starlark.Module()
        b.add_callable("__py_call", self._dispatch)
        b.add_callable("__py_str", lambda v: v.starlark_str())
        b.add_callable("__py_type", lambda v: v.TYPE)
        b.add_callable("__py_print", self.printed.append)
        b["TRIGGER_MODE_AUTO"] = starlark.OpaquePythonObject(TRIGGER_MODE_AUTO)
        b["TRIGGER_MODE_MANUAL"] = starlark.OpaquePythonObject(TRIGGER_MODE_MANUAL)
        shims, modules = [], {}
        for name in self._impls():
            fn = "__" + name.replace(".", "_") if "." in name else name
            shims.append(f"def {fn}(*args, **kwargs):\n    return __call({name!r}, args, kwargs)\n")
            if "." in name:
                *mod, attr = name.split(".")
                node = modules
                for part in mod:
                    node = node.setdefault(part, {})
                node[attr] = fn
        lit = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731 - a Starlark string literal
        modules["os"]["name"] = lit("posix")
        modules["config"] = {"main_dir": lit(go_dir(self._main)), "main_path": lit(self._main), "tilt_subcommand": lit("up")}

        def struct(node: dict) -> str:
            return "struct(" + ", ".join(f"{k} = {struct(v) if isinstance(v, dict) else v}" for k, v in node.items()) + ")"
        shims += [f"{mod} = {struct(node)}\n" for mod, node in modules.items()]
        g = self._GLOBALS
        starlark.eval(b, starlark.parse("<tilt builtins>", _PRELUDE_A, self._dialect()), g)
        starlark.eval(b, starlark.parse("<tilt builtins>", _PRELUDE_B + "\n".join(shims), self._dialect()), g)
        self._builtin_names = ([n for n in self._impls() if "." not in n] + list(modules)
                               + ["str", "type", "print", "TRIGGER_MODE_AUTO", "TRIGGER_MODE_MANUAL"])
        return b.freeze()

    def _impls(self) -> dict[str, Callable]:
        return {
            "local_resource": self._local_resource, "docker_build": self._docker_build,
            "custom_build": self._custom_build, "k8s_yaml": self._k8s_yaml, "k8s_resource": self._k8s_resource,
            "watch_settings": self._watch_settings, "watch_file": self._watch_file, "warn": self._warn_builtin,
            "fail": self._fail, "allow_k8s_contexts": self._allow_k8s_contexts, "update_settings": self._update_settings,
            "k8s_context": lambda fn, a, k: self.kube_context, "k8s_namespace": lambda fn, a, k: self.kube_namespace,
            "link": self._link, "probe": self._probe, "http_get_action": self._http_get_action,
            "exec_action": self._exec_action, "tcp_socket_action": self._tcp_socket_action,
            "read_file": self._read_file, "blob": self._blob, "kustomize": self._kustomize,
            "decode_yaml_stream": self._decode_yaml_stream, "decode_yaml": self._decode_yaml,
            "encode_yaml_stream": self._encode_yaml_stream, "encode_yaml": self._encode_yaml,
            "decode_json": self._decode_json, "encode_json": self._encode_json,
            "os.getcwd": self._os_getcwd, "os.getenv": self._os_getenv, "os.path.abspath": self._os_path_abspath,
            "os.path.basename": self._os_path_basename, "os.path.dirname": self._os_path_dirname,
            "os.path.exists": self._os_path_exists, "os.path.join": self._os_path_join,
            "os.path.realpath": self._os_path_realpath, "os.path.relpath": self._os_path_relpath,
            "v1alpha1.extension_repo": self._extension_repo, "v1alpha1.extension": self._extension,
        }

    def _dispatch(self, name: str, args: list, kwargs: list) -> Any:
        args_t = tuple(_decode(a) for a in args)
        kwargs_l = [(k, _decode(v)) for k, v in kwargs]
        self._given: dict = {}
        result = self._impls()[name](name, args_t, kwargs_l)
        self.calls.append(Call(name, args_t, dict(kwargs_l), Path(self._stack[-1]), self._given))
        return _encode(result)

    def _unpack(self, fn: str, args: tuple, kwargs: list, *pairs: Any) -> dict:
        return unpack_args(fn, args, kwargs, *pairs, given=self._given)

    # -- value kinds that depend on the executing file --
    def _k_local_path(self, v: Any) -> str:  # value.LocalPath
        s = as_string(v)
        if s is None:
            raise _Bad(f"expected path | string. Actual type: {go_type(v)}")
        return self._abs(s)

    def _k_local_path_list(self, v: Any) -> list[str]:  # value.LocalPathList
        if as_string_implicit(v) is not None:
            return [self._k_local_path(v)]
        if v is None:
            return []
        if type(v) not in (list, tuple):
            raise _Bad(f"value should be a string or List or Tuple of strings, but is of type {sl_type(v)}")
        out = []
        for i, item in enumerate(v):
            try:
                out.append(self._k_local_path(item))
            except _Bad as e:
                raise _Bad(f"unpacking list item at index {i}: {e}") from None
        return out

    def _cmd(self, cmd: Any, cmd_dir: Any, env: dict) -> dict:
        """value.ValueToHostCmd on Linux: a string is `sh -c STRING`, a sequence an argv."""
        if cmd_dir is _ABSENT or cmd_dir is None:
            directory = self._cwd()
        else:
            try:
                directory = self._k_local_path(cmd_dir)
            except _Bad as e:
                raise TiltError(f"a command directory must be empty or a string: {e}") from None
        for k, v in env.items():
            if k == "":
                raise TiltError(f"environment has empty key for value {go_quote(v)}")
        if cmd is _ABSENT:
            argv: list = []
        elif type(cmd) is str:
            argv = ["sh", "-c", cmd.strip()] if cmd else []
        elif _sequence_items(cmd) is not None:
            try:
                argv = sequence_to_string_slice(cmd)
            except _Bad as e:
                raise TiltError(f"a command must be a string or a list of strings: {e}") from None
        else:
            raise TiltError(f"a command must be a string or list of strings. found {go_type(cmd)}")
        return {"argv": argv, "dir": directory, "env": env}

    def _check_resource_conflict(self, name: str) -> None:
        if name in self._local:
            raise TiltError(f"local_resource named {go_quote(name)} already exists")

    # -- the builtins (each: (fn name, positional args, [(keyword, value)]) -> result) --
    def _local_resource(self, fn, args, kwargs):
        p = self._unpack(
            fn, args, kwargs,
            "name", k_name, "cmd?", k_value, "deps?", self._k_local_path_list, "trigger_mode?", k_trigger_mode,
            "resource_deps?", k_sequence, "ignore?", k_value, "auto_init?", k_bool, "serve_cmd?", k_value,
            "cmd_bat?", k_value, "serve_cmd_bat?", k_value, "allow_parallel?", k_bool, "links?", k_link_list,
            "labels?", k_label_set, "env?", k_string_string_map, "serve_env?", k_string_string_map,
            "readiness_probe?", k_probe, "dir?", k_value, "serve_dir?", k_value)
        try:
            resource_deps = sequence_to_string_slice(p.get("resource_deps"))
        except _Bad as e:
            raise TiltError(f"{fn}: resource_deps: {e}") from None
        self._values_to_strings(p.get("ignore"), "ignore")
        cmd = self._cmd(p.get("cmd", _ABSENT), p.get("dir", _ABSENT), p.get("env", {}))
        serve = self._cmd(p.get("serve_cmd", _ABSENT), p.get("serve_dir", _ABSENT), p.get("serve_env", {}))
        if "dir" in p and not cmd["argv"]:
            if serve["argv"]:
                raise TiltError("local_resource: 'dir' only affects 'cmd', not 'serve_cmd'. Did you mean to use 'serve_dir' instead?")
            raise TiltError("local_resource: 'dir' specified but 'cmd' is empty")
        if "serve_dir" in p and not serve["argv"]:
            raise TiltError("local_resource: 'serve_dir' specified but 'serve_cmd' is empty")
        if not cmd["argv"] and not serve["argv"]:
            raise TiltError("local_resource must have a cmd and/or a serve_cmd, but both were empty")
        if p.get("readiness_probe") is not None and not serve["argv"]:
            self._warn(f"Ignoring readiness probe for local resource {go_quote(p['name'])} (no serve_cmd was defined)")
        self._check_resource_conflict(p["name"])
        self._local[p["name"]] = {"resource_deps": resource_deps, "cmd": cmd, "serve_cmd": serve}

    def _values_to_strings(self, v: Any, param: str) -> list[str]:
        """parseValuesToStrings (docker_build/local_resource ignore, only)."""
        out = []
        for item in value_or_sequence(v):
            if type(item) is not str:
                raise TiltError(f"{param} must be a string or a sequence of strings; found a {go_type(item)}")
            if "\n" in item:
                raise TiltError(f"{param} cannot contain newlines; found {param}: {go_quote(item)}")
            out.append(item)
        return out

    def _live_update(self, v: Any) -> None:
        """liveUpdateFromSteps: these stand-ins define no step builtins, so only no steps pass."""
        for step in value_or_sequence(v):
            raise TiltError(f"live_update: 'steps' must be a list of live update steps - got value "
                            f"'{sl_str(step)}' of type '{sl_type(step)}'")

    def _add_image(self, ref: str) -> None:
        normalized = parse_image_ref(ref)
        if normalized in self._images:
            raise TiltError(f"Image for ref {go_quote(ref)} has already been defined")
        self._images.add(normalized)

    def _docker_build(self, fn, args, kwargs):
        p = self._unpack(
            fn, args, kwargs,
            "ref", k_string, "context", self._k_local_path, "build_args?", k_string_string_map,
            "dockerfile??", self._k_local_path, "dockerfile_contents?", k_value, "cache?", k_value,
            "live_update?", k_value, "match_in_env_vars?", k_bool, "ignore?", k_value, "only?", k_value,
            "entrypoint?", k_value, "container_args?", k_sequence, "target?", k_string,
            "ssh?", k_string_or_string_list, "secret?", k_string_or_string_list, "network?", k_stringable,
            "extra_tag?", k_string_or_string_list, "cache_from?", k_string_or_string_list, "pull?", k_bool,
            "platform?", k_stringable, "extra_hosts?", k_string_or_string_list)
        try:
            parse_image_ref(p["ref"])
        except TiltError as e:
            raise TiltError(f"Argument 1 (ref): can't parse {go_quote(p['ref'])}: {e}") from None
        if "dockerfile_contents" in p and "dockerfile" in p:
            raise TiltError("Cannot specify both dockerfile and dockerfile_contents keyword arguments")
        if "dockerfile_contents" in p:
            if as_string_implicit(p["dockerfile_contents"]) is None:
                raise TiltError("Argument (dockerfile_contents): must be string or blob.")
        else:
            dockerfile = p.get("dockerfile") or go_join(p["context"], "Dockerfile")
            self._record_read(dockerfile)
            try:
                go_read_file(dockerfile)
            except TiltError as e:
                raise TiltError(f"error reading dockerfile: {e}") from None
        if "cache" in p:
            self._warn("docker_build(cache=...) is obsolete, and currently a no-op.")
        self._live_update(p.get("live_update"))
        self._values_to_strings(p.get("ignore"), "ignore")
        for only in self._values_to_strings(p.get("only"), "only"):
            if "*" in only:
                raise TiltError(f"'only' does not support '*' file globs. Must be a real path: {only}")
        self._cmd(p.get("entrypoint", _ABSENT), _ABSENT, {})
        if "container_args" in p:
            try:
                sequence_to_string_slice(p["container_args"])
            except _Bad as e:
                raise TiltError(f"Argument 'container_args': {e}") from None
        for tag in p.get("extra_tag", []):
            try:
                parse_image_ref(tag)
            except TiltError as e:
                raise TiltError(f"Argument extra_tag={go_quote(tag)} not a valid image reference: {e}") from None
        self._add_image(p["ref"])

    def _custom_build(self, fn, args, kwargs):
        p = self._unpack(
            fn, args, kwargs,
            "ref", k_string, "command", k_value, "deps", self._k_local_path_list, "tag?", k_string,
            "disable_push?", k_bool, "skips_local_docker?", k_bool, "live_update?", k_value,
            "match_in_env_vars?", k_bool, "ignore?", k_value, "entrypoint?", k_value,
            "container_args?", k_sequence, "command_bat_val", k_value, "outputs_image_ref_to", self._k_local_path,
            "command_bat", k_value, "image_deps", self._k_image_list, "env?", k_string_string_map, "dir?", k_value)
        try:
            parse_image_ref(p["ref"])
        except TiltError as e:
            raise TiltError(f"Argument 1 (ref): can't parse {go_quote(p['ref'])}: {e}") from None
        self._live_update(p.get("live_update"))
        self._values_to_strings(p.get("ignore"), "ignore")
        self._cmd(p.get("entrypoint", _ABSENT), _ABSENT, {})
        if "container_args" in p:
            try:
                sequence_to_string_slice(p["container_args"])
            except _Bad as e:
                raise TiltError(f"Argument 'container_args': {e}") from None
        try:
            command = self._cmd(p["command"], p.get("dir", _ABSENT), p.get("env", {}))
        except TiltError as e:
            raise TiltError(f"Argument 2 (command): {e}") from None
        if not command["argv"]:
            raise TiltError("Argument 2 (command) can't be empty")
        if p.get("tag") and p.get("outputs_image_ref_to"):
            raise TiltError("Cannot specify both tag= and outputs_image_ref_to=")
        self._add_image(p["ref"])
        return CustomBuild(p["ref"])

    def _k_image_list(self, v: Any) -> list[str]:  # value.ImageList
        refs = k_string_list(v)
        for r in refs:
            try:
                parse_image_ref(r)
            except TiltError as e:
                raise _Bad(f"must be a valid image reference: {e}") from None
        return refs

    def _k8s_yaml(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "yaml", k_value, "allow_duplicates?", k_bool)
        values = value_or_sequence(p["yaml"])
        if not values:
            raise TiltError("Empty YAML passed to k8s_yaml")
        entities = []
        for v in values:
            if isinstance(v, Blob):
                try:
                    entities += self._parse_k8s(v.text)
                except TiltError as e:
                    raise TiltError(f"Error reading yaml from {v.source}: {e}") from None
                continue
            try:
                path = self._k_local_path(v)
            except _Bad as e:
                raise TiltError(str(e)) from None
            self._record_read(path)
            try:
                text = go_read_file(path)
            except TiltError as e:
                raise TiltError(f"error reading yaml file: {e}") from None
            entities += self._parse_k8s(text)
        if not entities and as_string(values[0]) in (None, ""):
            raise TiltError("Empty YAML passed to k8s_yaml")
        self._k8s_entities += entities

    @staticmethod
    def _parse_k8s(text: str) -> list[dict]:
        docs = decode_yaml_docs(text)
        for d in docs:
            if not isinstance(d, dict) or not d.get("kind"):
                raise TiltError(f"Object 'Kind' is missing in '{json.dumps(d)}'")
        return docs

    def _k8s_resource(self, fn, args, kwargs):
        p = self._unpack(
            fn, args, kwargs,
            "workload?", k_name, "new_name?", k_name, "port_forwards?", k_value, "extra_pod_selectors?", k_value,
            "trigger_mode?", k_trigger_mode, "resource_deps?", k_sequence, "objects?", k_sequence,
            "auto_init?", k_optional_bool, "pod_readiness?", k_pod_readiness, "links?", k_link_list,
            "labels?", k_label_set, "discovery_strategy?", k_discovery_strategy)
        workload, new_name = p.get("workload", ""), p.get("new_name", "")
        name = workload or new_name
        if not name:
            raise TiltError("Resource name missing. Must give a name for an existing resource or a new_name to create a new resource.")
        try:
            self._port_forwards(p.get("port_forwards"))
        except TiltError as e:
            raise TiltError(f"{fn} {go_quote(name)}: {e}") from None
        self._pod_selectors(p.get("extra_pod_selectors"))
        try:
            resource_deps = sequence_to_string_slice(p.get("resource_deps"))
            objects = sequence_to_string_slice(p.get("objects"))
        except _Bad as e:
            raise TiltError(f"{fn}: resource_deps: {e}") from None
        if not workload and not objects:
            raise TiltError("k8s_resource doesn't specify a workload or any objects. All non-workload resources must specify 1 or more objects")
        self._k8s_resources.append({"workload": workload, "new_name": new_name, "resource_deps": resource_deps,
                                    "objects": objects, "file": self._stack[-1]})

    @staticmethod
    def _port_forwards(v: Any) -> None:
        """convertPortForwards: an int, "LOCAL[:CONTAINER]", "HOST:LOCAL:CONTAINER", or a list of those."""
        def port(text: str) -> None:
            if not re.fullmatch(r"[+-]?[0-9]+", text) or not 0 <= int(text) <= 65535:
                raise TiltError(f"portForward port value {go_quote(text)} is not in the valid range [0-65535]")

        def one(x: Any) -> None:
            if type(x) is int:
                if not 0 <= x <= 65535:
                    raise TiltError(f"portForward port value {x} is not in the valid range [0-65535]")
                return
            parts = x.split(":", 2)
            if len(parts) == 3 and not re.fullmatch(_VALID_HOST, parts[0]):
                # (Tilt quotes the local port here, not the host)
                raise TiltError(f"portForward host value {go_quote(parts[1])} is not a valid hostname or IP address")
            port(parts[1] if len(parts) == 3 else parts[0])
            if len(parts) > 1:
                port(parts[-1])

        if v is None:
            return
        if type(v) in (int, str):
            return one(v)
        items = _sequence_items(v)
        if items is None:
            raise TiltError(f"port_forwards must be an int, a port_forward, or a sequence of those; is a {go_type(v)}")
        for x in items:
            if type(x) not in (int, str):
                raise TiltError(f"port_forwards arg {sl_str(v)} includes element {sl_str(x)} which must be an int or a port_forward; is a {go_type(x)}")
            one(x)

    @staticmethod
    def _pod_selectors(v: Any) -> None:
        def labels(d: dict) -> None:
            for k, x in d.items():
                if type(k) is not str:
                    raise TiltError(f"pod label keys must be strings; got '{sl_str(k)}' of type {go_type(k)}")
                if type(x) is not str:
                    raise TiltError(f"pod label values must be strings; got '{sl_str(x)}' of type {go_type(x)}")
        if v is None:
            return
        if type(v) is dict:
            return labels(v)
        if type(v) is not list:
            raise TiltError(f"pod labels must be a dict or a list; got {go_type(v)}")
        for d in v:
            if type(d) is not dict:
                raise TiltError(f"pod labels elements must be dicts; got {go_type(d)}")
            labels(d)

    def _watch_settings(self, fn, args, kwargs):
        self._unpack(fn, args, kwargs, "ignore?", k_string_or_string_list)

    def _watch_file(self, fn, args, kwargs):
        self._record_read(self._unpack(fn, args, kwargs, "paths", self._k_local_path)["paths"])

    def _warn_builtin(self, fn, args, kwargs):
        self._warn(self._unpack(fn, args, kwargs, "msg", k_string)["msg"])

    def _fail(self, fn, args, kwargs):
        raise TiltError(self._unpack(fn, args, kwargs, "msg", k_string)["msg"])

    def _allow_k8s_contexts(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "contexts", k_value)
        for c in value_or_sequence(p["contexts"]):
            if type(c) is not str:
                raise TiltError(f"allow_k8s_contexts contexts must be a string or a sequence of strings; found a {go_type(c)}")

    def _update_settings(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "max_parallel_updates?", k_value, "k8s_upsert_timeout_secs?", k_value,
                        "suppress_unused_image_warnings?", k_string_or_string_list, "k8s_server_side_apply?", k_string)
        for key, floor, msg in (("max_parallel_updates", 1, "max number of parallel updates must be >= 1(got: {})"),
                                ("k8s_upsert_timeout_secs", 1, "minimum k8s upsert timeout is 1s; got {}s")):
            v = p.get(key)
            if v is None:
                continue
            if type(v) is not int:
                raise TiltError(f'update_settings: for parameter "{key}": got {go_type(v)}, want int')
            if v < floor:
                raise TiltError(msg.format(v))
        ssa = p.get("k8s_server_side_apply", "")
        if ssa not in ("", "true", "false", "auto"):
            raise TiltError(f'update_settings: k8s_server_side_apply must be "true", "false", or "auto"; got {go_quote(ssa)}')

    def _link(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "url", k_string, "name?", k_string)
        return Link(_url_with_scheme(p["url"]), p.get("name", ""))

    def _probe(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "initial_delay_secs?", k_int32, "timeout_secs?", k_int32,
                        "period_secs?", k_int32, "success_threshold?", k_int32, "failure_threshold?", k_int32,
                        "exec?", k_exec_action, "http_get?", k_http_get_action, "tcp_socket?", k_tcp_socket_action)
        if sum(p.get(k) is not None for k in ("exec", "http_get", "tcp_socket")) != 1:
            raise TiltError("exactly one of exec, http_get, or tcp_socket must be specified")
        return Probe(**p)

    def _http_get_action(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "port", k_int, "host?", k_string, "scheme?", k_string, "path?", k_string)
        return HTTPGetAction(**p)

    def _exec_action(self, fn, args, kwargs):
        return ExecAction(self._unpack(fn, args, kwargs, "command", k_string_sequence)["command"])

    def _tcp_socket_action(self, fn, args, kwargs):
        return TCPSocketAction(**self._unpack(fn, args, kwargs, "port", k_int, "host?", k_string))

    def _read_file(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "paths", self._k_local_path, "default?", k_optional_string)
        path = p["paths"]
        self._record_read(path)
        try:
            text = go_read_file(path)
        except _NotExist:
            if p.get("default") is None:
                raise
            text = p["default"]
        return Blob(text, f"file: {path}")

    def _blob(self, fn, args, kwargs):
        return Blob(self._unpack(fn, args, kwargs, "input", k_string)["input"], "Tiltfile blob() call")

    def _kustomize(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "paths", self._k_local_path, "kustomize_bin?", self._k_local_path,
                        "flags?", k_string_list)
        path = p["paths"]
        if p.get("kustomize_bin") or p.get("flags"):
            raise TiltError("these stand-ins run only `kubectl kustomize DIR` (no kustomize_bin, no flags)")
        if not (Path(path) / "kustomization.yaml").is_file():
            raise TiltError(f"Command \"kubectl kustomize {go_rel(self._cwd(), path)}\" failed: no kustomization.yaml in {path}")
        self._record_read(path)
        return Blob(kustomize_build(Path(path)), f"kustomize: {path}")

    def _decode_yaml_stream(self, fn, args, kwargs):
        return decode_yaml_docs(self._unpack(fn, args, kwargs, "yaml", k_stringable)["yaml"])

    def _decode_yaml(self, fn, args, kwargs):
        docs = self._decode_yaml_stream(fn, args, kwargs)
        if len(docs) > 1:
            raise TiltError("expected a yaml document but found a yaml stream (documents separated by `---`). "
                            "use decode_yaml_stream instead to decode a yaml stream")
        return docs[0] if docs else None

    def _encode_yaml(self, fn, args, kwargs):
        obj = to_structured(self._unpack(fn, args, kwargs, "obj", k_value)["obj"])
        return Blob(yaml.safe_dump(obj, sort_keys=True), "encode_yaml")  # Go maps: keys sorted

    def _encode_yaml_stream(self, fn, args, kwargs):
        objs = self._unpack(fn, args, kwargs, "objs", k_list)["objs"]
        return Blob("---\n".join(yaml.safe_dump(to_structured(o), sort_keys=True) for o in objs), "encode_yaml_stream")

    def _decode_json(self, fn, args, kwargs):
        text = self._unpack(fn, args, kwargs, "json", k_stringable)["json"]
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise TiltError(f"error parsing JSON: {e}") from None

    def _encode_json(self, fn, args, kwargs):
        obj = to_structured(self._unpack(fn, args, kwargs, "obj", k_value)["obj"])
        text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # Go's json.Encoder

    # os
    def _os_getcwd(self, fn, args, kwargs):
        self._unpack(fn, args, kwargs)
        return self._cwd()

    def _os_getenv(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "key", k_stringable, "default?", k_value)
        value = self.env.get(p["key"], os.environ.get(p["key"]))
        return p.get("default") if value is None else value

    def _path_arg(self, fn, args, kwargs) -> str:
        return self._unpack(fn, args, kwargs, "path", k_string)["path"]

    def _os_path_abspath(self, fn, args, kwargs):
        return self._abs(self._path_arg(fn, args, kwargs))

    def _os_path_basename(self, fn, args, kwargs):
        return go_base(self._path_arg(fn, args, kwargs))

    def _os_path_dirname(self, fn, args, kwargs):
        return go_dir(self._path_arg(fn, args, kwargs))

    def _os_path_exists(self, fn, args, kwargs):
        return os.path.exists(self._abs(self._path_arg(fn, args, kwargs)))

    def _os_path_realpath(self, fn, args, kwargs):
        p = self._abs(self._path_arg(fn, args, kwargs))
        if not os.path.lexists(p):
            raise TiltError(f"lstat {p}: no such file or directory")
        return os.path.realpath(p)

    def _os_path_relpath(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "targpath", k_string, "basepath?", k_string)
        return go_rel(p.get("basepath", self._cwd()), p["targpath"])

    def _os_path_join(self, fn, args, kwargs):
        # Tilt's join reads only the positional arguments (keywords are ignored, not rejected)
        parts = []
        for i, a in enumerate(args):
            if type(a) is not str:
                raise TiltError(f"os.path.join() only accepts strings. Argument #{i}: {sl_str(a)}")
            parts.append(a)
        return go_join(*parts)

    # v1alpha1 and ext://
    def _register(self, resource: str, name: str, spec: dict) -> None:
        existing = self._objects[resource].get(name)
        if existing is not None and existing != spec:
            raise TiltError(f"{resource} {go_quote(name)} already registered")
        self._objects[resource][name] = spec

    def _extension_repo(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "name", k_string, "labels?", k_string_string_map,
                        "annotations?", k_string_string_map, "url?", k_string, "ref?", k_string,
                        "load_host?", k_string, "git_subpath?", k_string)
        url = p.get("url", "")
        is_file = url.startswith("file://")
        if not (is_file or url.startswith("https://") or url.startswith("http://")):
            raise TiltError(f"spec.url: Invalid value: {go_quote(url)}: URLs must start with http(s):// or file://")
        if is_file and not url[len("file://"):].startswith("/"):
            raise TiltError(f"spec.url: Invalid value: {go_quote(url)}: file:// URLs must be absolute (e.g., file:///home/user/repo)")
        if is_file and p.get("git_subpath"):
            raise TiltError(f"spec.git_subpath: Invalid value: {go_quote(p['git_subpath'])}: "
                            "cannot use git_subpath for file:// URL extension repositories")
        self._register("extensionrepos", p["name"], {k: p.get(k, "") for k in ("url", "ref", "load_host", "git_subpath")})

    def _extension(self, fn, args, kwargs):
        p = self._unpack(fn, args, kwargs, "name", k_string, "labels?", k_string_string_map,
                        "annotations?", k_string_string_map, "repo_name?", k_string, "repo_path?", k_string,
                        "args?", k_string_list)
        self._register("extensions", p["name"], {"repo_name": p.get("repo_name", ""), "repo_path": p.get("repo_path", "")})

    def _extension_path(self, module: str) -> str:
        """tiltextension.Plugin.LocalPath: the extension (registered, by load_host, or in the
        default repo), its repo reconciled, the Tiltfile inside it."""
        exts, repos = self._objects["extensions"], self._objects["extensionrepos"]
        ext_name = _sanitize_name(module)
        if ext_name not in exts:
            host, slash, sub = module.partition("/")
            match = [n for n, r in repos.items() if slash and r["load_host"] and r["load_host"] == host]
            exts[ext_name] = ({"repo_name": match[0], "repo_path": sub} if match else
                              {"repo_name": "default", "repo_path": module})
        ext = exts[ext_name]
        repo_name = ext["repo_name"]
        if repo_name not in repos:
            repos[repo_name] = {"url": "https://github.com/tilt-dev/tilt-extensions", "ref": "", "load_host": "", "git_subpath": ""}
        repo = repos[repo_name]
        try:
            root = self._reconcile_repo(repo)
        except TiltError as e:
            raise TiltError(f"loading extension repo {repo_name}: {e}") from None
        path = go_join(root, repo["git_subpath"], ext["repo_path"], "Tiltfile")
        if not go_is_child(root, path):
            raise TiltError(f"loading extension {ext_name}: invalid repo path: {ext['repo_path']}")
        if not os.path.isfile(path):
            raise TiltError(f"loading extension {ext_name}: no extension tiltfile found at {path}")
        return path

    def _reconcile_repo(self, repo: dict) -> str:
        url = repo["url"]
        if url.startswith("file://"):
            if repo["ref"]:
                raise TiltError("spec.ref not supported on file:// repos")
            path = url[len("file://"):]
            if not path.startswith("/"):
                raise TiltError(f"file paths must be absolute. Url: {url}")
            if not os.path.exists(path):
                raise TiltError(f"loading: stat {path}: no such file or directory")
            if not os.path.isdir(path):
                raise TiltError("loading: not a directory")
            return path
        if not (url.startswith("https://") or url.startswith("http://")):
            raise TiltError(f"invalid: URL must start with 'https://': {url}")
        if url not in self.downloads:
            raise TiltError(f"download error: waiting 5s before retrying. Original error: these stand-ins download "
                            f"nothing; Tilt(downloads={{{url!r}: <directory>}}) says what {url} holds")
        return go_clean(str(self.downloads[url]))

    # -- after the main Tiltfile: what Tilt's assembly checks --
    def _assemble(self) -> None:
        workloads = [e for e in self._k8s_entities if e.get("kind") in _WORKLOAD_KINDS]

        def candidates(e: dict) -> list[str]:
            group = e.get("apiVersion", "").rpartition("/")[0] or "core"
            meta = e.get("metadata") or {}
            parts = [meta.get("name", ""), e["kind"], meta.get("namespace", "") or "default", group]
            return [":".join(parts[: i + 1]).lower() for i in range(len(parts))]

        counts: dict[str, int] = {}
        for e in workloads:
            for c in candidates(e):
                counts[c] = counts.get(c, 0) + 1
        k8s_names = {}
        for i, e in enumerate(workloads):
            names = candidates(e)
            k8s_names[next((n for n in names if counts[n] == 1), f"{names[-1]}:{i}")] = e
        for name in k8s_names:
            self._check_resource_conflict(name)
        final = dict.fromkeys(k8s_names)
        for opts in self._k8s_resources:
            if opts["workload"]:
                if opts["workload"] not in final:
                    raise TiltError(f"{opts['file']}: k8s_resource specified unknown resource {go_quote(opts['workload'])}. "
                                    f"known k8s resources: {', '.join(final)}")
                if opts["new_name"]:
                    final[opts["new_name"]] = final.pop(opts["workload"])
            elif opts["new_name"]:
                final[opts["new_name"]] = None
        known = set(final) | set(self._local)
        for name, res in list(self._local.items()) + [(o["new_name"] or o["workload"], o) for o in self._k8s_resources]:
            for dep in res["resource_deps"]:
                if dep not in known:
                    self._warn(f"resource {name} specified a dependency on unknown resource {dep} - dependency ignored")

