"""`longrecall run --preset NAME`: the whole job as resumable stages, each one a `longrecall` command.

    longrecall run --preset demo --output-dir runs/demo            # what `make demo` runs
    longrecall run --preset cpu --output-dir runs/cpu --stage train  # one stage alone

A preset (configs/presets/NAME.yaml, shipped with the package) is a table of stages; each stage is the command line
a user would type, with {out} standing for the run folder. Every path a stage uses derives from {out}: a preset may
name `inputs:` (e.g. rl-cpu's `sft_adapter: "{out}/../cpu/train/adapter"`) that `--input NAME=PATH` overrides, and
`{publish}` becomes `--publish DIR` only when the run is given `--publish DIR`; nothing is written outside the run
folder otherwise. Every stage runs in its own process, so its time and peak memory are
measured and a crash in one stage loses nothing of the others. A finished stage leaves {out}/stages/NAME.json
and is skipped when the pipeline runs again; an interrupted one resumes from what its command saved.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .config import CONFIG_DIR, load_yaml
from .errors import UserError
from .io import write_json

PRESET_DIR = CONFIG_DIR / "presets"


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise UserError(f"unknown preset '{name}': use one of {names} or a path to a preset YAML")
    return path


def load_preset(name: str) -> dict:
    data = load_yaml(preset_path(name))
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise UserError(f"preset {name} has no stages: add a 'stages' list of {{name, run}} entries")
    seen = set()
    for st in stages:
        if not isinstance(st, dict) or "name" not in st or "run" not in st:
            raise UserError(f"preset {name}: every stage needs 'name' and 'run' (got {st!r})")
        unknown = set(st) - {"name", "run", "needs", "what", "threads", "uses"}
        if unknown:
            raise UserError(f"preset {name}, stage {st['name']}: unknown keys {sorted(unknown)}: use name, run, needs, what, threads")
        if st["name"] in seen:
            raise UserError(f"preset {name}: stage {st['name']} appears twice")
        seen.add(st["name"])
    inputs = data.get("inputs") or {}
    if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
        raise UserError(f"preset {name}: 'inputs' must map names to paths (e.g. sft_adapter: \"{{out}}/../cpu/train/adapter\")")
    unknown = set(data) - {"stages", "inputs"}
    if unknown:
        raise UserError(f"preset {name}: unknown keys {sorted(unknown)}: use stages, inputs")
    return data


def preset_inputs(preset: dict, out: Path, given: dict | None = None) -> dict[str, str]:
    """The preset's named inputs, each a path derived from the run folder unless `--input NAME=PATH` gives it."""
    declared = preset.get("inputs") or {}
    for key in given or {}:
        if key not in declared:
            names = ", ".join(sorted(declared)) or "none"
            raise UserError(f"--input {key}: this preset has no input '{key}' (its inputs: {names})")
    values = {k: v.format(out=str(out)) for k, v in declared.items()}
    values.update({k: str(v) for k, v in (given or {}).items()})
    return values


def stage_argv(stage: dict, out: Path, inputs: dict | None = None, publish: str | None = None) -> list[str]:
    fields = {"out": str(out), "publish": f"--publish {shlex.quote(str(publish))}" if publish else ""}
    fields.update(inputs or {})
    try:
        return shlex.split(stage["run"].format(**fields))
    except KeyError as e:
        raise UserError(f"stage {stage['name']} uses {{{e.args[0]}}}, which the preset does not define: add it under 'inputs'") from None


def stage_file(out: Path, name: str) -> Path:
    return out / "stages" / f"{name}.json"


def check_inputs(stage: dict, inputs: dict | None) -> None:
    for key in stage.get("uses", []):
        path = Path((inputs or {}).get(key, ""))
        if not path.exists():
            raise UserError(f"stage '{stage['name']}' needs input '{key}' at {path}, which does not exist: "
                            f"make it first or pass --input {key}=PATH")


def run_stage(stage: dict, out: Path, preset: str, inputs: dict | None = None, publish: str | None = None) -> dict:
    """Run one stage in a child process that records its own wall time and peak memory."""
    argv = stage_argv(stage, out, inputs, publish)
    check_inputs(stage, inputs)
    stats = out / "stages" / f".{stage['name']}.stats.json"
    stats.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if stage.get("threads"):
        env["OMP_NUM_THREADS"] = str(stage["threads"])
    print(f"\n=== stage {stage['name']}: longrecall {' '.join(argv)}", flush=True)
    t0 = time.time()
    code = subprocess.call([sys.executable, "-m", "longrecall.pipeline", "--_stage-stats", str(stats), *argv], env=env)
    if code != 0:
        raise UserError(
            f"stage '{stage['name']}' failed (exit {code}): fix what it printed, then re-run "
            f"`longrecall run --preset {preset} --output-dir {out}` (finished stages are kept) or run it alone with --stage {stage['name']}"
        )
    info = json.loads(stats.read_text()) if stats.exists() else {"seconds": time.time() - t0, "peak_rss_mb": None}
    info.update(name=stage["name"], command="longrecall " + " ".join(argv), what=stage.get("what", ""))
    write_json(stage_file(out, stage["name"]), info)
    print(f"=== stage {stage['name']} done in {info['seconds']:.0f}s, peak memory {info.get('peak_rss_mb') or 0:.0f} MB", flush=True)
    return info


def _child(stats_path: str, argv: list[str]) -> int:
    """Inside the stage process: run the command, then record wall time and peak RSS."""
    import resource

    from .cli import main as cli_main

    t0 = time.time()
    code = cli_main(argv)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    write_json(stats_path, {"seconds": round(time.time() - t0, 1), "peak_rss_mb": round(peak_kb / 1024, 1)})
    return code


def add_arguments(p: argparse.ArgumentParser) -> None:
    names = " | ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
    p.add_argument("--preset", default="demo", help=f"{names}, or a path to a preset YAML")
    p.add_argument("--output-dir", default=None, help="run folder (default runs/PRESET)")
    p.add_argument("--stage", default=None, help="comma list of stages to run alone (earlier stages must be done)")
    p.add_argument("--force", action="store_true", help="re-run the chosen stages even if they are done")
    p.add_argument("--list", action="store_true", help="list the preset's stages and their commands")
    p.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="a preset input from elsewhere (rl-cpu: sft_adapter=runs/cpu/train/adapter); default: derived from --output-dir")
    p.add_argument("--publish", default=None, metavar="DIR",
                   help="also copy the final report here (e.g. docs/results/cpu); nothing is written outside --output-dir without it")


def main(a) -> None:
    preset = load_preset(a.preset)
    name = Path(a.preset).stem
    out = Path(a.output_dir or f"runs/{name}")
    stages = preset["stages"]
    from .config import parse_key_values

    inputs = preset_inputs(preset, out, parse_key_values(getattr(a, "input", None), "--input", typed=False))
    publish = getattr(a, "publish", None)
    if a.list:
        for st in stages:
            done = "done" if stage_file(out, st["name"]).exists() else "    "
            print(f"{done} {st['name']:14s} longrecall {' '.join(stage_argv(st, out, inputs, publish))}")
        return
    chosen = [s.strip() for s in a.stage.split(",")] if a.stage else [st["name"] for st in stages]
    names = [st["name"] for st in stages]
    for c in chosen:
        if c not in names:
            raise UserError(f"preset {name} has no stage '{c}': use one of {', '.join(names)}")
    for st in stages:  # a missing input is one line before the run folder is made
        if st["name"] in chosen and not (stage_file(out, st["name"]).exists() and not a.force):
            check_inputs(st, inputs)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "preset.json", {"preset": name, "stages": stages})
    t0 = time.time()
    for st in stages:
        if st["name"] not in chosen:
            continue
        for need in st.get("needs", []):
            if not stage_file(out, need).exists():
                raise UserError(
                    f"stage '{st['name']}' needs stage '{need}', which has not finished: run "
                    f"`longrecall run --preset {a.preset} --output-dir {out} --stage {need}` first"
                )
        if stage_file(out, st["name"]).exists() and not a.force:
            print(f"=== stage {st['name']}: done earlier, skipped ({stage_file(out, st['name'])})")
            continue
        run_stage(st, out, a.preset, inputs, publish)
    print(f"\npipeline '{name}' finished in {time.time() - t0:.0f}s; report: {out / 'report.md'}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--_stage-stats":
        sys.exit(_child(sys.argv[2], sys.argv[3:]))
    raise SystemExit("use `longrecall run`")
