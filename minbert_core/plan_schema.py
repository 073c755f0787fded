"""The study plan's shape, checked before anything runs.

The YAML is read strictly (plain data only: no tags such as !!python/..., no duplicate keys), then
checked against a typed model of every key. Each mistake is one line, `<plan file>: <key path>:
<problem>`, all of them at once. What the keys mean is minbert_core.plan's (and study.yaml's header).
"""
from __future__ import annotations

import keyword
import re
from typing import Annotated, Any, Optional

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator


class PlanError(ValueError):
    """Every mistake found in a plan, one `<plan file>: <key path>: <problem>` line each."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{source}: {path}: {problem}" for path, problem in problems))


def key_path(path: str, key: Any) -> str:
    """`path.key`, or `path['odd key']` where the key is not a plain word (so it stays one line)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


# ---- the YAML: plain data, each key once ----

_YAML = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}


def read_plan_text(text: str, source: str) -> Any:
    """The plan's data from its YAML text: strings, numbers, booleans, lists and mappings only.

    A YAML tag (`!!python/object:...`, a date), a key given twice in one mapping (YAML keeps the last
    silently) or a non-string key is a PlanError naming its key path and line.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(top level)"
        raise PlanError(source, [(where, f"not valid YAML: {getattr(e, 'problem', None) or e}")]) from None
    problems: list[tuple[str, str]] = []
    if root is not None:
        _check_node(root, "", problems, set())
    if problems:
        raise PlanError(source, problems)
    return yaml.safe_load(text)


def _check_node(node: yaml.Node, path: str, problems: list, seen: set) -> None:
    if id(node) in seen:  # an alias: checked where its anchor is
        return
    seen.add(id(node))
    line = node.start_mark.line + 1
    if node.tag not in _PLAIN_TAGS and node.tag != _YAML + "merge":
        problems.append((path or "(top level)", f"line {line}: YAML tag {node.tag} is not plain data; "
                         "write a string (quoted), number, true/false, list or mapping"))
        return
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_node(item, key_path(path, i), problems, seen)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for k, v in node.value:
            if k.tag == _YAML + "merge":  # `<<: *anchor`: its keys may be overridden here
                _check_node(v, path, problems, seen)
                continue
            if not isinstance(k, yaml.ScalarNode) or k.tag not in (_YAML + "str", _YAML + "int"):
                problems.append((path or "(top level)", f"line {k.start_mark.line + 1}: a key must be a string"))
                continue
            sub = key_path(path, k.value)
            if k.value in lines:
                problems.append((sub, f"duplicate key (lines {lines[k.value]} and {k.start_mark.line + 1}): "
                                 "YAML would keep only the last silently; give it once"))
            lines[k.value] = k.start_mark.line + 1
            _check_node(v, sub, problems, seen)


# ---- the model ----

def _identifier(k: str) -> str:
    if not k.isidentifier() or keyword.iskeyword(k):
        raise ValueError("a parameter name must be a Python identifier (papermill writes it into the notebook "
                         "as `name = value`)")
    return k


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "no value"}.get(type(v), f"{type(v).__name__} {v!r}")


def _scalar(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)):
        return v
    raise ValueError(f"a parameter value must be a string, number or true/false; got {_kind(v)}")


def _grid_value(v: Any) -> Any:
    if isinstance(v, list):
        if not v:
            raise ValueError("an empty list expands into no runs")
        return [_scalar(x) for x in v]
    return _scalar(v)


def _seeds(v: Any) -> list[int]:
    if (not isinstance(v, list) or not v or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in v)
            or len(set(v)) != len(v)):
        raise ValueError(f"seeds must be a non-empty list of distinct integers >= 0; got {_kind(v)}")
    return v


def _block(d: dict) -> dict:
    for k, v in d.items():
        _seeds(v) if k == "seeds" else _scalar(v)
    return d


Name = Annotated[str, AfterValidator(_identifier)]
Block = Annotated[dict[Name, Any], AfterValidator(_block)]  # parameter -> value (and a block's `seeds`)
GridValue = Annotated[Any, AfterValidator(_grid_value)]  # a list expands into one run per value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Target(_Strict):
    """A profile's target for a table: the least mean score per metric, in the given columns."""

    table: int
    columns: list[str] = Field(min_length=1)
    min: dict[str, float] = Field(min_length=1)
    tried: str = ""  # what was tried, stated under the table when a target is missed


class Profile(BaseModel):
    """One profile: its fixed keys, and blocks of parameters named by a notebook (02_multitask) or by an
    experiment's `block` (table4)."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, Block] = Field(init=False)

    description: str = ""
    common: Block = {}  # every training run's parameters
    tables: Optional[list[int]] = None  # the tables this profile runs (default: all)
    targets: list[Target] = []
    seeds: Optional[Annotated[list[int], AfterValidator(_seeds)]] = None  # a block without its own seeds


class Experiment(_Strict):
    """One plan entry: a notebook and its grid, or (same_as) a table cell read from another's runs."""

    name: str
    notebook: Optional[str] = None
    same_as: Optional[str] = None
    block: Optional[str] = None
    grid: dict[Name, GridValue] = {}
    table: Optional[int] = None
    row: Optional[str] = None
    column: Optional[str] = None
    compare_to: Optional[str] = None
    expect_failure: Optional[str] = None

    @model_validator(mode="after")
    def _runs_or_reads(self) -> "Experiment":
        if (self.notebook is None) == (self.same_as is None):
            raise ValueError("give `notebook` (runs of a notebook) or `same_as` (a column read from another "
                             "experiment's runs), one of them")
        if self.same_as is not None and (self.grid or self.block):
            raise ValueError("a same_as entry runs nothing: it takes no grid or block")
        return self


class Plan(_Strict):
    """The whole plan: profiles by name, and the experiments every profile runs."""

    profiles: dict[str, Profile] = Field(min_length=1)
    experiments: list[Experiment] = Field(min_length=1)


def check_plan(data: Any, source: str) -> Plan:
    """The plan's data as a typed Plan; every mistake of shape or type is a PlanError line."""
    if data is None:
        raise PlanError(source, [("(top level)", "the plan is empty; it needs `profiles` and `experiments`")])
    if not isinstance(data, dict):
        raise PlanError(source, [("(top level)", f"must be a mapping with `profiles` and `experiments`; "
                                                 f"got {_kind(data)}")])
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        raise PlanError(source, [_problem(err, data) for err in e.errors()]) from None
    return plan


_MESSAGES = {"dict_type": "must be a mapping", "list_type": "must be a list", "int_type": "must be an integer",
             "string_type": "must be a string", "float_type": "must be a number", "bool_type": "must be true or false"}


def _problem(err: dict, data: dict) -> tuple[str, str]:
    """(key path, problem) of one pydantic error, an experiment's name beside its index."""
    loc = [k for k in err["loc"] if k != "[key]"]
    path = ""
    for i, k in enumerate(loc):
        path = key_path(path, k)
        if i == 1 and loc[0] == "experiments":
            entry = data["experiments"][k] if isinstance(data.get("experiments"), list) else None
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                path += f" ({entry['name']})"
    msg = _MESSAGES.get(err["type"], err["msg"].removeprefix("Value error, "))
    if err["type"] == "extra_forbidden":
        model = Target if "targets" in loc else Experiment if loc[0] == "experiments" else Plan
        msg = f"unknown key; the keys here are {', '.join(model.model_fields)}"
    elif err["type"] == "missing":
        msg = "missing key"
    elif not err["type"].startswith("value_error") and "[key]" not in err["loc"]:
        msg += f"; got {_kind(err['input'])}"
    return path or "(top level)", msg
