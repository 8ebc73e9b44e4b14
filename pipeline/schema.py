"""The spec's JSON Schema and option tables, generated from the declarations (never by hand).

Every modality, head type and spec section declares its options once (preprocessing/options.py);
this module turns those declarations into a JSON Schema (`mimo schema`: editors validate and
complete a spec as it is typed, with `# yaml-language-server: $schema=...` on its first line)
and into the option tables of `mimo options` and the README.
"""

from __future__ import annotations

from pipeline.spec import (
    BASELINE_KINDS,
    DEFAULT_SPLIT,
    EVALUATION_OPTIONS,
    FORMATS,
    HEAD_OPTIONS,
    MODEL_OPTIONS,
    MONITORING_OPTIONS,
    NAME_RE,
    PIPELINE_NAME_RE,
    SCHEDULE_OPTIONS,
    TRAINING_OPTIONS,
    TUNING_OPTIONS,
)
from preprocessing import HEAD_TYPES, MODALITIES
from preprocessing.options import object_schema, options_table

SECTIONS = {
    "training": TRAINING_OPTIONS,
    "model": MODEL_OPTIONS,
    "evaluation": EVALUATION_OPTIONS,
    "schedule": SCHEDULE_OPTIONS,
    "monitoring": MONITORING_OPTIONS,
    "tuning": TUNING_OPTIONS,
}
_NAME = {"type": "string", "pattern": NAME_RE.pattern}
_COLUMN = {"type": "string", "minLength": 1, "description": "the column (default: the name)"}
_NUMBER = {"type": "number"}


def _input_schema(modality) -> dict:
    schema = object_schema(
        modality.options,
        extra={
            "name": _NAME,
            "column": _COLUMN,
            "modality": {"const": modality.name, "description": modality.doc},
        },
        required=("name", "modality"),
    )
    schema["title"] = f"{modality.name} input"
    return schema


def _output_schema(head_type) -> dict:
    metrics = list(head_type.metric_table)
    gate = {
        "type": "object",
        "properties": {
            "metric": {"enum": metrics},
            "min": _NUMBER,
            "max": _NUMBER,
            "max_regression": {"type": "number", "minimum": 0},
            "beats": {"enum": list(BASELINE_KINDS)},
        },
        "required": ["metric"],
        "additionalProperties": False,
    }
    common = {k: o.json_schema() for k, o in HEAD_OPTIONS.items()}
    common.update(
        column=_COLUMN,
        loss={"enum": list(head_type.losses), "default": head_type.default_loss},
        metrics={"type": "array", "items": {"enum": metrics}, "uniqueItems": True},
        gates={"type": "array", "items": gate},
    )
    if head_type.accepts_class_weights:
        common["class_weights"] = {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0},
        }
    else:
        del common["class_weights"]
    schema = object_schema(
        head_type.options,
        extra={
            "name": _NAME,
            "type": {"const": head_type.name, "description": head_type.doc},
            **common,
        },
        required=("name", "type"),
    )
    schema["title"] = f"{head_type.name} head"
    return schema


def spec_json_schema() -> dict:
    split_value = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "mimo dataset spec",
        "type": "object",
        "required": ["name", "data", "inputs", "outputs"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": PIPELINE_NAME_RE.pattern},
            "data": {
                "type": "object",
                "required": ["path"],
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string", "description": "a file, a glob or a directory"},
                    "format": {"enum": list(FORMATS), "default": "csv"},
                    "split": {
                        "type": "object",
                        "required": ["train", "eval"],
                        "additionalProperties": False,
                        "properties": {
                            "train": split_value,
                            "validation": split_value,
                            "eval": split_value,
                        },
                        "default": DEFAULT_SPLIT,
                        "description": "hash-bucket counts, or a file pattern per split; "
                        "validation (early stopping, model selection) is carved from train "
                        "when bucket counts leave it out",
                    },
                    "split_key": {"type": "string", "description": "hash on this column"},
                    "schema": {"type": "string", "description": "a curated schema.pbtxt"},
                },
            },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [_input_schema(m) for m in MODALITIES.values()]},
            },
            "outputs": {
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [_output_schema(h) for h in HEAD_TYPES.values()]},
            },
            "slices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": _NAME,
                        "column": _COLUMN,
                        "bucket_width": {"type": "number", "exclusiveMinimum": 0},
                    },
                },
            },
            **{name: object_schema(declared) for name, declared in SECTIONS.items()},
        },
    }


def _table(title: str, doc: str, declared) -> str:
    lines = [f"#### {title}", ""]
    if doc:
        lines += [doc[0].upper() + doc[1:] + ".", ""]
    if not declared:
        return "\n".join([*lines, "No options of its own."])
    lines += ["| option | default | accepts | what it does |", "|---|---|---|---|"]
    for name, default, accepts, what in options_table(declared):
        lines.append(f"| `{name}` | `{default}` | {accepts} | {what} |")
    return "\n".join(lines)


def options_markdown(name: str | None = None) -> str:
    """Markdown tables of every declared option (or of one modality, head type or section)."""
    blocks = {}
    for m in MODALITIES.values():
        blocks[m.name] = _table(f"`{m.name}` input", m.doc, m.options)
    for h in HEAD_TYPES.values():
        blocks[h.name] = _table(f"`{h.name}` head", h.doc, h.options)
    blocks["head"] = _table("every head", "keys every head takes besides its type's", HEAD_OPTIONS)
    for section, declared in SECTIONS.items():
        blocks[section] = _table(f"`{section}:`", "", declared)
    if name is None:
        return "\n\n".join(blocks.values())
    if name not in blocks:
        raise KeyError(f"no modality, head type or section {name!r} (known: {', '.join(blocks)})")
    return blocks[name]


README_BEGIN = "<!-- options: generated by `python -m pipeline.schema --readme`; do not edit -->"
README_END = "<!-- options: end -->"


def write_readme_tables(path: str) -> None:
    """Replaces the README's option reference with the tables of the current declarations."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.index(README_BEGIN) + len(README_BEGIN), text.index(README_END)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[:start] + "\n\n" + options_markdown() + "\n\n" + text[end:])


if __name__ == "__main__":
    import os
    import sys

    if sys.argv[1:] != ["--readme"]:
        sys.exit("usage: python -m pipeline.schema --readme")
    write_readme_tables(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md"))
