"""Load a ``HomeserverConfig`` from a YAML file plus ``TRICOLOR_*`` environment overrides.

The loader is generic: it walks the attrs fields of ``config.schema`` and their
type hints, so adding a setting there is all it takes. It is strict on purpose:
an unknown key, a wrong type or a bad value stops the server at start-up with a
message naming the file, the key path (``listeners[0].port``) and the problem,
rather than letting a typo silently fall back to a default.

Environment overrides (applied on top of the file, validated the same way):

- ``TRICOLOR_<KEY>`` for top-level settings (``TRICOLOR_SERVER_NAME``, ``TRICOLOR_LOG_LEVEL``)
- ``TRICOLOR_<SECTION>__<KEY>`` for section settings (``TRICOLOR_LIMITS__MAX_EVENT_BYTES``)
- the short aliases in ``ENV_ALIASES`` (``TRICOLOR_PORT`` is the first listener's port)

Relative paths, in the file or in the environment, are taken relative to the
config file's directory and stored absolute.
"""

from __future__ import annotations

import difflib
import itertools
import os
import types
import typing
from collections.abc import Hashable, Mapping
from typing import Any, NoReturn

import attrs
import yaml

from config.errors import ConfigError
from config.schema import (
    CHECK,
    CHECK_ITEM,
    CHECK_KEY,
    FROM_FILE,
    RESOLVE,
    Check,
    HomeserverConfig,
)

__all__ = ["ENV_ALIASES", "ConfigError", "env_override_names", "load_config"]

ENV_PREFIX = "TRICOLOR_"


class MapKey(str):
    """A key inside a mapping setting, shown as ``static_map['hs2.test']`` in key paths."""

    __slots__ = ()


KeyPath = tuple[str | int, ...]  # str: a setting name (or a MapKey); int: a list index

# Short names for the overrides people reach for most. Applied after the generic
# ``TRICOLOR_<SECTION>__<KEY>`` form, so an alias wins when both are set.
ENV_ALIASES: Mapping[str, KeyPath] = {
    "TRICOLOR_DATABASE_URL": ("database", "url"),
    "TRICOLOR_REDIS_URL": ("redis", "url"),
    "TRICOLOR_WORKER_NAME": ("workers", "name"),
    "TRICOLOR_RABBITMQ_URL": ("rabbitmq", "url"),
    "TRICOLOR_REGISTRATION_ENABLED": ("registration", "enabled"),
    "TRICOLOR_PORT": ("listeners", 0, "port"),
    "TRICOLOR_HOST": ("listeners", 0, "host"),
}

# Settings that moved; naming the new place beats a fuzzy "did you mean".
_MOVED_KEYS: Mapping[str, str] = {"federation_verify_tls": "federation.verify_tls"}

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def load_config(path: str, env: Mapping[str, str] | None = None) -> HomeserverConfig:
    """Read, override, validate and resolve the config at ``path``.

    ``env`` defaults to ``os.environ``; pass ``{}`` to ignore the environment.
    Raises ``ConfigError`` for anything wrong with the file or the overrides.
    """
    env = os.environ if env is None else env
    file = os.path.abspath(os.path.expanduser(path))
    raw = _read_yaml(file)
    if raw is None:  # an empty file: everything from defaults and the environment
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"expected a mapping of settings at the top level, got {_describe(raw)}", file=file
        )
    _apply_env(raw, env, file)
    config = _Builder(file=file, base_dir=os.path.dirname(file)).section(HomeserverConfig, raw, ())
    return attrs.evolve(config, config_path=file)


def env_override_names() -> dict[str, str]:
    """Every recognised override variable -> the dotted key it sets (for docs and --help)."""
    return {name: _format_path(path) for name, path in _env_table().items()}


# ---- YAML -------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys, which PyYAML would silently merge."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` followed by an override is not a duplicate
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(file: str) -> Any:
    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}") from None
    except UnicodeDecodeError:
        raise ConfigError("config file is not UTF-8 text", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", file=file) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error{where}: {problem}", file=file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", file=file) from None


# ---- environment ------------------------------------------------------------------------


@attrs.frozen
class _EnvValue:
    """An override still in text form: its type is known only where it lands in the schema."""

    name: str
    text: str


def _env_table() -> dict[str, KeyPath]:
    table: dict[str, KeyPath] = {}
    for top in _file_fields(HomeserverConfig):
        if attrs.has(top.type):
            for sub in _file_fields(top.type):
                table[f"{ENV_PREFIX}{top.name.upper()}__{sub.name.upper()}"] = (top.name, sub.name)
        elif not _is_tuple_of_sections(top.type):
            table[f"{ENV_PREFIX}{top.name.upper()}"] = (top.name,)
    table.update(ENV_ALIASES)  # later entries win, so aliases override the generic form
    return table


def _apply_env(raw: dict[Any, Any], env: Mapping[str, str], file: str) -> None:
    table = _env_table()
    for name in env:
        # Other TRICOLOR_* variables (test settings, ...) are not ours, but a
        # double-underscore one is clearly meant as an override: a typo must not pass.
        if name.startswith(ENV_PREFIX) and "__" in name and name not in table:
            close = difflib.get_close_matches(name, list(table), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown override variable {name}{hint}", file=file)
    for name, path in table.items():
        if name in env:
            _set_path(raw, path, _EnvValue(name, env[name]))


def _set_path(raw: dict[Any, Any], path: KeyPath, value: _EnvValue) -> None:
    """Put ``value`` at ``path``, creating missing sections and list items on the way."""
    container: Any = raw
    for part, next_part in itertools.pairwise(path):
        empty: Any = [] if isinstance(next_part, int) else {}
        if isinstance(container, dict):
            if container.get(part) is None:
                container[part] = empty
            container = container[part]
        elif isinstance(container, list) and isinstance(part, int) and part <= len(container):
            if part == len(container):
                container.append(empty)
            container = container[part]
        else:
            return  # the file has the wrong shape here; validation reports it
    last = path[-1]
    if isinstance(container, dict):
        container[last] = value
    elif isinstance(container, list) and isinstance(last, int) and last < len(container):
        container[last] = value


# ---- validation -------------------------------------------------------------------------


@attrs.frozen
class _Builder:
    file: str
    base_dir: str

    def fail(self, path: KeyPath, problem: str, env_name: str | None = None) -> NoReturn:
        key = _format_path(path) or "(top level)"
        if env_name:
            key += f" (from ${env_name})"
        raise ConfigError(problem, file=self.file, key=key)

    def section(self, cls: type[Any], raw: Any, path: KeyPath) -> Any:
        if raw is None:  # `redis:` with nothing under it means "all defaults"
            raw = {}
        if not isinstance(raw, Mapping):
            self.fail(path, f"expected a mapping of settings, got {_describe(raw)}")
        fields = {f.name: f for f in _file_fields(cls)}
        for key in raw:
            if key not in fields:
                moved = _MOVED_KEYS.get(str(key)) if not path else None
                if moved:
                    self.fail((str(key),), f"this setting moved: write it as {moved}")
                self.fail((*path, str(key)), _unknown_key(key, list(fields)))
        kwargs: dict[str, Any] = {}
        for name, field in fields.items():
            if name in raw:
                kwargs[name] = self.field(field, raw[name], (*path, name))
            elif field.default is attrs.NOTHING:
                self.fail((*path, name), "required setting is missing")
            else:
                kwargs[name] = self.default(field, (*path, name))
        try:
            return cls(**kwargs)
        except ValueError as exc:  # a rule across fields (__attrs_post_init__)
            self.fail(path, str(exc))

    def default(self, field: attrs.Attribute[Any], path: KeyPath) -> Any:
        # Defaults go through the same resolution so that default relative paths
        # are also taken from the config file's directory.
        if attrs.has(field.type):
            return self.section(field.type, {}, path)
        default = field.default
        value = default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]
        resolve = field.metadata.get(RESOLVE)
        return resolve(value, self.base_dir) if resolve and value is not None else value

    def field(self, field: attrs.Attribute[Any], raw: Any, path: KeyPath) -> Any:
        env_name = None
        if isinstance(raw, _EnvValue):
            env_name = raw.name
            raw = self.parse_env(raw, field.type, path)
        value = self.convert(raw, field.type, path, env_name)
        if value is not None:
            self.check_items(field, value, path, env_name)
        check = field.metadata.get(CHECK)
        if value is not None and check is not None:
            problem = check(value)
            if problem is not None:
                self.fail(path, problem, env_name)
        resolve = field.metadata.get(RESOLVE)
        if value is not None and resolve is not None:
            value = resolve(value, self.base_dir)
        return value

    def check_items(
        self, field: attrs.Attribute[Any], value: Any, path: KeyPath, env_name: str | None
    ) -> None:
        """Run the per-item checks, naming the item: ``trusted_key_servers[1]``, ``m['k']``."""
        check_item, check_key = field.metadata.get(CHECK_ITEM), field.metadata.get(CHECK_KEY)
        checks: list[tuple[KeyPath, Check | None, Any]] = []
        if isinstance(value, Mapping):
            for key, item in value.items():
                checks += [((*path, MapKey(key)), check_key, key)]
                checks += [((*path, MapKey(key)), check_item, item)]
        elif isinstance(value, tuple):
            checks += [((*path, i), check_item, item) for i, item in enumerate(value)]
        for item_path, check, checked in checks:
            problem = check(checked) if check is not None else None
            if problem is not None:
                self.fail(item_path, problem, env_name)

    def convert(
        self, raw: Any, tp: Any, path: KeyPath, env_name: str | None, nullable: bool = False
    ) -> Any:
        inner = _optional_inner(tp)
        if inner is not None:
            return None if raw is None else self.convert(raw, inner, path, env_name, True)
        if attrs.has(tp):
            return self.section(tp, raw, path)
        expected = _type_name(tp) + (" or null" if nullable else "")
        if typing.get_origin(tp) is tuple:
            if not isinstance(raw, list):
                self.fail(path, f"expected {expected}, got {_describe(raw)}", env_name)
            item_type = typing.get_args(tp)[0]
            return tuple(
                self.convert(item, item_type, (*path, i), env_name) for i, item in enumerate(raw)
            )
        if _is_mapping(tp):
            if not isinstance(raw, Mapping):
                self.fail(path, f"expected {expected}, got {_describe(raw)}", env_name)
            key_type, value_type = typing.get_args(tp)
            if key_type is not str:
                raise TypeError(f"config schema uses an unsupported mapping key type: {tp!r}")
            out: dict[str, Any] = {}
            for key, item in raw.items():
                if not isinstance(key, str):
                    self.fail(
                        (*path, MapKey(str(key))),
                        f"expected a string key, got {_describe(key)}",
                        env_name,
                    )
                out[key] = self.convert(item, value_type, (*path, MapKey(key)), env_name)
            return out
        if tp is bool and isinstance(raw, bool):
            return raw
        if tp is int and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if tp is str and isinstance(raw, str):
            return raw
        if tp is float and isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if tp is str and isinstance(raw, int) and not isinstance(raw, bool):
            # YAML reads `default_room_version: 10` as a number; keep the digits as written.
            return str(raw)
        if tp not in (bool, int, float, str):
            raise TypeError(f"config schema uses an unsupported type: {tp!r}")
        self.fail(path, f"expected {expected}, got {_describe(raw)}", env_name)

    def parse_env(self, value: _EnvValue, tp: Any, path: KeyPath) -> Any:
        text = value.text.strip()
        inner = _optional_inner(tp)
        if inner is not None:
            if text.lower() in ("", "null", "none"):
                return None
            tp = inner
        if tp is bool:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            self.fail(path, f"expected true or false, got {value.text!r}", value.name)
        if tp is int:
            try:
                return int(text)
            except ValueError:
                self.fail(path, f"expected an integer, got {value.text!r}", value.name)
        if tp is float:
            try:
                return float(text)
            except ValueError:
                self.fail(path, f"expected a number, got {value.text!r}", value.name)
        if tp is str:
            return text
        if typing.get_origin(tp) is tuple and typing.get_args(tp)[0] is str:
            return [part.strip() for part in text.split(",") if part.strip()]
        if _is_mapping(tp) and typing.get_args(tp) == (str, str):
            # NAME=VALUE pairs separated by commas: hs2.test=127.0.0.1:8449,hs3.test=...
            pairs: dict[str, str] = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, eq, item = part.partition("=")
                if not eq or not key.strip():
                    self.fail(
                        path,
                        f"expected NAME=VALUE pairs separated by commas, got {part!r}",
                        value.name,
                    )
                pairs[key.strip()] = item.strip()
            return pairs
        self.fail(path, "cannot be set from the environment", value.name)


# ---- small helpers ----------------------------------------------------------------------


def _file_fields(cls: type[Any]) -> list[attrs.Attribute[Any]]:
    return [f for f in attrs.fields(cls) if f.metadata.get(FROM_FILE, True)]


def _optional_inner(tp: Any) -> Any:
    """``X | None`` -> ``X``; anything else -> None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    return args[0] if len(args) == 1 else None


def _is_mapping(tp: Any) -> bool:
    return typing.get_origin(tp) in (dict, Mapping)


def _is_tuple_of_sections(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple and attrs.has(typing.get_args(tp)[0])


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "a list"
    if _is_mapping(tp):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, repr(tp))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unknown_key(key: Any, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (allowed here: {', '.join(allowed)})"


def _format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, MapKey):
            out += f"[{str(part)!r}]"
        else:
            out += f".{part}" if out else part
    return out
