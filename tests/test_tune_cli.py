"""`valuetune data build`, `tune` and `eval` through the CLI, on a tiny saved model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from valuetune.cli.main import app  # noqa: E402
from valuetune.tune.artifacts import read_fit, read_metadata  # noqa: E402

RUNNER = CliRunner()


def run(args: list[str], input: str | None = None) -> Any:
    return RUNNER.invoke(app, args, input=input)


def ok_json(args: list[str]) -> Any:
    result = run([*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def tiny_model_dir(
    tmp_path_factory: pytest.TempPathFactory, embedded_tokenizer: Any, make_tiny_llama: Any
) -> Path:
    folder = tmp_path_factory.mktemp("tiny-model")
    make_tiny_llama(4).save_pretrained(folder)
    embedded_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def token(tmp_path: Path) -> str:
    profile = tmp_path / "p.json"
    result = run(["personas", "show", "progressive-activist", "--json"])
    profile.write_text(result.stdout)
    return str(ok_json(["token", "mint", "--profile", str(profile)])["token"])


def test_data_build_writes_trl_rows_for_training_scenarios_only(token: str, tmp_path: Path) -> None:
    from valuetune.tune.scenarios import load_scenario_bank

    doc = ok_json(["data", "build", "--token", token, "--out", str(tmp_path / "d")])
    rows = [json.loads(x) for x in (tmp_path / "d" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == doc["pairs"] > 50
    heldout = {s.id for s in load_scenario_bank().split("heldout")}
    assert not heldout & {r["scenario_id"] for r in rows}
    assert token not in (tmp_path / "d" / "valuetune-artifact.json").read_text()
    again = run(["data", "build", "--token", token, "--out", str(tmp_path / "d")])
    assert again.exit_code != 0 and "already exists" in again.stderr
    bad = run(["data", "build", "--token", "v4.local.xyz", "--out", str(tmp_path / "e")])
    assert bad.exit_code == 3 and not (tmp_path / "e").exists()


def test_tune_and_eval_with_precis_and_steer(
    token: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = ["--model", str(tiny_model_dir)]
    for method in ("precis", "steer", "dpo"):
        out = tmp_path / method
        meta = ok_json(["tune", "--token", token, "--method", method, "--out", str(out), *model])
        assert read_metadata(out)["method"] == method == meta["method"]
        doc = ok_json(
            ["eval", "--token", token, "--method", method, "--artifact", str(out), *model]
        )
        for field in (
            "fit",
            "fit_ci",
            "base_fit",
            "gain",
            "perplexity_change",
            "method",
            "per_axis",
        ):
            assert field in doc
        assert 0.0 <= doc["fit"] <= 1.0 and doc["fit_ci"][0] <= doc["fit"] <= doc["fit_ci"][1]
        assert doc["gain"] == pytest.approx(doc["fit"] - doc["base_fit"], abs=1e-3)
        assert doc["n_items"] >= 50
        assert read_fit(out) == doc["fit"]  # kept beside the artifact for serving receipts
    assert (
        ok_json(["eval", "--token", token, "--method", "precis", *model])["perplexity_change"]
        == 0.0
    )


def test_dpo_tune_keeps_to_its_time_budget_and_refuses_a_corrupted_adapter(
    token: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = ["--model", str(tiny_model_dir)]
    out = tmp_path / "dpo"
    meta = ok_json(
        [
            "tune",
            "--token",
            token,
            "--method",
            "dpo",
            "--out",
            str(out),
            "--time-budget",
            "1",
            *model,
        ]
    )
    assert meta["metrics"]["stopped"] in {"time_budget", "completed"}
    assert meta["kind"] == "alignment/dpo" and len(meta["base_model_sha256"]) == 64
    (out / "adapter_config.json").write_text("{not json")
    result = run(["eval", "--token", token, "--method", "dpo", "--artifact", str(out), *model])
    assert result.exit_code == 1 and "damaged" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_method_and_missing_model_are_clear_errors(token: str, tmp_path: Path) -> None:
    result = run(["tune", "--token", token, "--method", "magic", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unknown method 'magic'" in result.stderr
    result = run(
        ["tune", "--token", token, "--out", str(tmp_path / "x"), "--model", str(tmp_path / "none")]
    )
    assert result.exit_code != 0 and "cannot load a model" in result.stderr
    assert "Traceback" not in result.output


def test_soup_library_then_soup_tune_and_eval(
    token: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = ["--model", str(tiny_model_dir)]
    missing = run(["tune", "--token", token, "--method", "soup", "--out", str(tmp_path / "s")])
    assert missing.exit_code != 0 and "valuetune soup build" in missing.stderr
    library = tmp_path / "library"
    build = [
        *("soup", "build", "--out", str(library), "--persona", "progressive-activist"),
        *("--axis", "care", "--axis", "liberty", "--pairs", "8", "--epochs", "1", *model),
    ]
    meta = ok_json(build)
    assert [c["name"] for c in meta["components"]] == [
        "persona:progressive-activist",
        "axis:care",
        "axis:liberty",
    ]
    out = tmp_path / "soup"
    tune = ["tune", "--token", token, "--method", "soup", "--out", str(out)]
    soup = ok_json([*tune, "--library", str(library), *model])
    # the token's profile is the persona's: its adapter carries the soup
    assert soup["kind"] == "alignment/soup"
    assert max(soup["weights"], key=soup["weights"].get) == "persona:progressive-activist"
    doc = ok_json(["eval", "--token", token, "--method", "soup", "--artifact", str(out), *model])
    assert doc["method"] == "soup" and 0.0 <= doc["fit"] <= 1.0
    bad = run([*build[:-2], "--axis", "kindness", *model])
    assert bad.exit_code != 0 and "unknown value axes" in bad.stderr


def test_auto_picks_the_cheapest_method_that_fits_and_falls_back_to_dpo(
    token: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = ["--model", str(tiny_model_dir)]
    tune = ["tune", "--token", token, "--method", "auto"]
    easy = ok_json([*tune, "--out", str(tmp_path / "a"), "--threshold", "0", *model])
    assert easy["chosen"] == "precis" and easy["candidates"][0]["validation_fit"] >= 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "precis",
        "valuetune-artifact.json",
    ]
    doc = ok_json(
        ["eval", "--token", token, "--method", "auto", "--artifact", str(tmp_path / "a"), *model]
    )
    assert doc["method"] == "auto"
    hard = ok_json(
        [*tune, "--out", str(tmp_path / "b"), "--threshold", "1", "--time-budget", "1", *model]
    )
    assert hard["chosen"] == "dpo"
    tried = {c["method"]: c for c in hard["candidates"]}
    assert tried["precis"]["validation_fit"] < 1 and "soup build" in tried["soup"]["skipped"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging left


def test_compare_recommends_the_cheapest_method_meeting_the_threshold(
    token: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = ["--model", str(tiny_model_dir)]
    compare = ["compare", "--token", token, "--method", "soup", "--method", "precis", *model]
    doc = ok_json([*compare, "--threshold", "0"])
    assert [r["method"] for r in doc["methods"]] == ["precis", "soup"]
    precis, soup = doc["methods"]
    assert {"fit", "fit_ci", "gain", "perplexity_change", "build_seconds"} <= set(precis)
    assert "soup build" in soup["error"]
    assert doc["recommended"] == "precis" and 0 <= doc["base_fit"] <= 1
    strict = ok_json([*compare, "--threshold", "1", "--keep", str(tmp_path / "kept")])
    assert strict["recommended"] is None and strict["best"] == "precis"
    assert (tmp_path / "kept" / "precis" / "valuetune-artifact.json").is_file()


def test_tune_writes_where_serve_looks_and_export_vllm_lays_adapters_out(
    token: str, tiny_model_dir: Path, tmp_path: Path, make_adapter: Any
) -> None:
    from valuetune.llm.local import TransformersBackend
    from valuetune.server.lora import read_lora
    from valuetune.settings import Settings
    from valuetune.tune.artifacts import jti_hash
    from valuetune.tune.catalog import scan

    model = ["--model", str(tiny_model_dir)]
    home = Settings().home
    meta = ok_json(["tune", "--token", token, "--method", "steer", *model])
    jti = ok_json(["token", "verify", token])["jti"]
    expected = home / "artifacts" / jti_hash(jti)[:16] / "steer"
    assert meta["out"] == str(expected) and (expected / "valuetune-artifact.json").is_file()
    assert [e.method for e in scan([home / "artifacts"])] == ["steer"]

    missing = run(["export", "vllm", "--token", token, "--out", str(tmp_path / "v"), *model])
    assert missing.exit_code != 0 and "no LoRA adapter" in missing.stderr
    backend = TransformersBackend.from_directory(tiny_model_dir)
    folder = make_adapter(
        home / "artifacts" / "mine" / "soup",
        backend,
        jti,
        seed=5,
        kind="alignment/soup",
        alpha_pattern={"q_proj": 32},  # vLLM ignores patterns: export folds them in
    )
    doc = ok_json(["export", "vllm", "--token", token, "--out", str(tmp_path / "v"), *model])
    (adapter,) = doc["adapters"]
    assert adapter["name"].startswith("vt-soup-") and adapter["rank"] == 4
    out = Path(adapter["path"])
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "valuetune-artifact.json",
    ]
    assert json.loads((out / "adapter_config.json").read_text())["alpha_pattern"] == {}
    assert f"--lora-modules {adapter['name']}={out}" in doc["command"]
    assert "--enable-lora --max-lora-rank 8" in doc["command"]
    assert doc["command"].startswith(f"vllm serve {tiny_model_dir.resolve()} ")
    original = read_lora(folder, backend.model, "a")
    exported = read_lora(out, backend.model, "b")
    for name in original.modules:
        delta = original.delta(name, torch.float32)
        assert torch.allclose(delta, exported.delta(name, torch.float32), atol=1e-6)
    assert any(o[2] != exported.modules[n][2] for n, o in original.modules.items())
