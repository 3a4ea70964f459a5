"""The ``ssm-apps`` command for a newcomer: fast overview, command table, one-line errors, discoverable
classes, plugins kept, configs found from any folder."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from importlib import metadata

import pytest
import torch

import ssm_apps.cli as cli
from tests.helpers import REPO

CONFIG = str(REPO / "configs" / "timeseries" / "smamba_etth1.yaml")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def test_help_is_fast_lists_commands_and_configs_and_imports_no_torch(tmp_path):
    probe = ("import sys, time; t = time.perf_counter(); from ssm_apps.cli import main; main(['--help']); "
             "print('SECONDS', time.perf_counter() - t); "
             "print('HEAVY', sorted(m for m in ('torch', 'lightning', 'timm', 'numpy') if m in sys.modules))")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=60)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "HEAVY []" in out  # nothing heavy imported: the overview cannot be slow
    assert wall < 3.0, f"ssm-apps --help took {wall:.2f} s (interpreter start included)"
    for command in ("fit", "validate", "test", "predict", "demo"):
        assert f"\n  {command} " in out, command
    for config in ("timeseries/smamba_etth1.yaml", "vision/efficientvmamba_tiny_digits.yaml",
                   "vision/vmamba_reduced_digits.yaml"):
        assert config in out


def _fake_entry_points(monkeypatch, *entries):
    real = metadata.entry_points

    def entry_points(**kwargs):
        if kwargs.get("group") == cli.COMMANDS_GROUP:
            return [metadata.EntryPoint(name, value, cli.COMMANDS_GROUP) for name, value in entries]
        return real(**kwargs)

    monkeypatch.setattr(cli.metadata, "entry_points", entry_points)


def test_command_table_dispatches_entry_points_lazily(monkeypatch, capsys):
    """Domain commands come from the ``ssm_apps.commands`` entry points (monkeypatched: the shared
    environment's install predates them); the module is imported only when its command runs."""
    _fake_entry_points(monkeypatch, ("hello", "tests.cli.hello_command:main"))
    sys.modules.pop("tests.cli.hello_command", None)
    assert cli.command_table() == {"demo": "ssm_apps.demo:main", "hello": "tests.cli.hello_command:main"}
    assert cli.main(["--help"]) == 0
    assert "  hello      Says hello: a stand-in domain command" in capsys.readouterr().out
    assert "tests.cli.hello_command" not in sys.modules  # --help read the docstring without importing it
    assert cli.main(["hello", "a", "--b"]) == 7
    assert capsys.readouterr().out == "hello a --b\n"
    from tests.cli import hello_command

    assert hello_command.CALLS[-1] == ["a", "--b"]


def test_no_entry_points_falls_back_to_the_builtins(monkeypatch, capsys):
    _fake_entry_points(monkeypatch)
    assert cli.command_table() == {"demo": "ssm_apps.demo:main"}
    assert cli.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'nope'" in err and "fit, validate, test, predict, demo" in err


def test_cli_module_names_no_domain():
    """Outside its docstring (which shows how a domain registers a command), cli.py's code names no domain."""
    import ast

    tree = ast.parse((REPO / "ssm_apps" / "cli.py").read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n)}
    names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
              and id(n) not in docstrings]
    for domain in ("timeseries", "vision", "audio", "medical", "codec"):
        assert not [n for n in names if f"ssm_apps.{domain}" in n or n.split(".")[0] == domain], domain


def test_shipped_configs_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = cli.find_config("timeseries/smamba_etth1")
    assert found.endswith("smamba_etth1.yaml") and os.path.samefile(found, CONFIG)
    assert os.path.samefile(cli.find_config("configs/timeseries/smamba_etth1.yaml"), CONFIG)
    assert cli.find_config("missing.yaml") == "missing.yaml"
    (tmp_path / "mine.yaml").write_text("x: 1")
    assert cli.find_config("mine.yaml") == "mine.yaml"  # a local file wins


FAST = ["--model.init_args.model.init_args.d_model", "8", "--model.init_args.model.init_args.d_ff", "8",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _one_line_error(capsys, argv, match, code=1):
    assert cli.main(argv) == code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("ssm-apps: error:")]
    assert len(lines) == 1 and match in lines[0], captured.err[-2000:]
    # no traceback of the error (pytest's capture may add unrelated "--- Logging error ---" noise)
    err = re.sub(r"--- Logging error ---.*?(?=^ssm-apps: |^--- Logging error ---|\Z)", "", captured.err,
                 flags=re.S | re.M)
    assert "Traceback" not in err and "--traceback" in lines[0]


def test_user_errors_are_one_line_and_traceback_shows_the_trace(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, ["fit", "--config", CONFIG, "--model.init_args.no_such_key", "3"],
                    "Option 'no_such_key' is not accepted", code=2)
    _one_line_error(capsys, ["fit", "--config", CONFIG, *FAST, "--data.init_args.data_path", "missing.csv"],
                    "time-series CSV not found: missing.csv")
    _one_line_error(capsys, ["fit", "--config", CONFIG, *FAST, "--data.init_args.lookback", "9000"],
                    "lookback + horizon = 9096 leaves no training window")  # windows longer than the data
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage")
    _one_line_error(capsys, ["test", "--config", CONFIG, *FAST, "--ckpt_path", str(bad)],
                    f"{bad}: cannot read the checkpoint")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        cli.main(["fit", "--config", CONFIG, *FAST, "--data.init_args.data_path", "missing.csv", "--traceback"])


def test_checkpoint_of_another_model_is_refused_before_running(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert cli.main(["fit", "--config", CONFIG, *FAST, "--run_dir", str(run)]) == 0
    capsys.readouterr()
    # the checkpoint's hyper-parameters rebuild the model it was saved from (LightningCLI), so "another model"
    # is a state dict that does not fit those hyper-parameters: one tensor of another shape, one missing
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    state = ckpt["state_dict"]
    first, second = list(state)[:2]
    state[first] = torch.zeros(3, 3)
    del state[second]
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    _one_line_error(capsys, ["predict", "--config", CONFIG, *FAST, "--ckpt_path", str(other)],
                    f"{other}: checkpoint of another model")


def test_tasks_and_data_modules_discoverable_and_short_names(tmp_path, monkeypatch, capsys):
    from ssm_apps.lightning_cli import SSMAppsCLI

    with pytest.raises(SystemExit):
        SSMAppsCLI(args=["fit", "--help"])
    out = capsys.readouterr().out
    for name in ("ForecastingTask", "ClassificationTask", "TimeSeriesDataModule", "ImageClassificationDataModule"):
        assert name in out, name
    monkeypatch.chdir(tmp_path)
    parsed = SSMAppsCLI(args=["--model", "ForecastingTask", "--model.model", "SMamba", "--model.model.lookback", "96",
                              "--model.model.horizon", "96", "--model.model.d_model", "8", "--model.model.d_ff", "8",
                              "--data", "TimeSeriesDataModule", "--trainer.logger", "false"], run=False)
    try:
        assert type(parsed.model).__name__ == "ForecastingTask" and type(parsed.model.model).__name__ == "SMamba"
        assert type(parsed.datamodule).__name__ == "TimeSeriesDataModule"
    finally:
        parsed.release()


def test_lookback_and_horizon_written_once_and_linked_into_the_model(tmp_path, monkeypatch):
    from ssm_apps.lightning_cli import SSMAppsCLI

    monkeypatch.chdir(tmp_path)
    import yaml

    shipped = yaml.safe_load((REPO / "configs" / "timeseries" / "smamba_etth1.yaml").read_text())
    assert not {"lookback", "horizon"} & set(shipped["model"]["init_args"]["model"]["init_args"])  # written once
    parsed = SSMAppsCLI(args=["--config", CONFIG, *FAST, "--data.init_args.lookback", "48",
                              "--data.init_args.horizon", "24", "--run_dir", "x"], run=False)
    parsed.release()
    assert (parsed.model.model.lookback, parsed.model.model.horizon) == (48, 24)
    assert (parsed.datamodule.lookback, parsed.datamodule.horizon) == (48, 24)


def test_atomic_checkpoint_io_added_to_plugins_and_a_users_own_kept(tmp_path, monkeypatch):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from ssm_apps.lightning_cli import SSMAppsCLI
    from ssm_apps.training.checkpoint_io import AtomicCheckpointIO

    monkeypatch.chdir(tmp_path)
    default = SSMAppsCLI(args=["--config", CONFIG, *FAST, "--run_dir", "a"], run=False)
    default.release()
    assert type(default.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    own = SSMAppsCLI(args=["--config", CONFIG, *FAST, "--run_dir", "b",
                           "--trainer.plugins", "lightning.pytorch.plugins.io.TorchCheckpointIO"], run=False)
    own.release()
    assert type(own.trainer.strategy.checkpoint_io) is TorchCheckpointIO
