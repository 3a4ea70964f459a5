"""benchmarks/train_codec_gpu.py on CPU (--quick): trains ours and the baseline, writes the small
files and the JSON, and a second run resumes from the first."""

from __future__ import annotations

import json
import sys

import torch

from ssm_apps.codecs.pretrained import load_weights_file
from tests.helpers import REPO, shared_path

sys.path.insert(0, str(REPO / "benchmarks"))
import train_codec_gpu


def test_quick_run_and_resume(tmp_path):
    first, second = tmp_path / "r1", tmp_path / "r2"
    images = shared_path("data", "images")
    common = [
        "--quick",
        "--device",
        "cpu",
        "--train-seconds",
        "1",
        "--train-dirs",
        str(images / "train"),
        str(images / "extra"),
        "--kodak",
        str(images / "kodak"),
    ]
    assert train_codec_gpu.main([*common, "--out", str(first)]) == 0
    summary = json.loads((first / "train_codec.json").read_text())
    names = [job["name"] for job in summary["jobs"]]
    assert names == ["cmamba-tiny-mse", "mbt2018_mean-q1"] and not any("error" in job for job in summary["jobs"])
    ours = summary["jobs"][0]
    assert ours["steps_this_run"] >= 1 and [a["quality"] for a in ours["kodak"]["averages"]] == [1, 2]
    assert all(a["bit_exact"] for a in ours["kodak"]["averages"])
    assert (first / "mbt2018_mean-q1.pt.z").is_file()
    shipped = json.loads((first / "cmamba-tiny-mse.json").read_text())
    assert shipped["per_image"][0]["image"] == "kodim01.png" and "bpp" in shipped["per_image"][0]
    model = load_weights_file(first / "cmamba-tiny-mse.pt")
    assert model.codec_id == "cmamba-tiny-mse" and model.num_qualities == 2
    payload = torch.load(first / "cmamba-tiny-mse.pt", weights_only=False)
    steps = payload["train_state"]["steps"]

    import bench_codec_rd

    assert (
        bench_codec_rd.main(
            [
                "--train-json",
                str(first / "train_codec.json"),
                "--weights",
                str(first / "cmamba-tiny-mse.pt"),
                "--baseline-dir",
                str(first),
                "--time-images",
                "1",
                "--kodak",
                str(images / "kodak"),
                "--out",
                str(tmp_path / "rd"),
            ]
        )
        == 0
    )
    rd = json.loads((tmp_path / "rd" / "codec_rd.json").read_text())
    assert rd["curves"]["CMamba (ours)"]["quality"] == [1, 2] and rd["images"] == 1 and rd["crop"] == 128
    assert (tmp_path / "rd" / "codec_rd.png").is_file()
    # the baseline's rows of that run reused instead of its weights
    rd_args = ["--train-json", str(first / "train_codec.json"), "--weights", str(first / "cmamba-tiny-mse.pt")]
    rd_args += ["--time-images", "1", "--kodak", str(images / "kodak"), "--out", str(tmp_path / "rd2")]
    assert bench_codec_rd.main([*rd_args, "--baseline-rows", str(tmp_path / "rd" / "codec_rd.json")]) == 0
    again = json.loads((tmp_path / "rd2" / "codec_rd.json").read_text())
    assert again["curves"]["mbt2018_mean"] == rd["curves"]["mbt2018_mean"]

    assert train_codec_gpu.main([*common, "--baseline-qualities", "--resume", str(first), "--out", str(second)]) == 0
    resumed = torch.load(second / "cmamba-tiny-mse.pt", weights_only=False)["train_state"]
    assert resumed["runs"] == 2 and resumed["steps"] > steps
