"""Trust (issue #10): nothing wrong, foreign or stale reaches a table. Every fault here is
real — a truncated or altered file, a malicious pickle, a second live process — and each
test checks the one clear error or the correct recovery."""
from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import checkpoint
from bench.cli import main
from bench.data import available, load
from bench.data.catalog import CIFAR10_CLASSES, CIFAR10C_CORRUPTIONS, KNOWN_MD5
from bench.errors import CorruptFileError, DiskFullError, LockedError, MissingDataError
from bench.fileio import atomic_write, locked, read_json, torch_load, torch_save, write_json

from conftest import REPO, tiny_model
from test_training import CONFIG, start

MARKER = "pwned"   # what a malicious pickle would create if it ever ran


class Evil:
    """Unpickling this runs a shell command (creates ``self.path``): it must never happen."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


# ---------------------------------------------------------------- fake datasets on disk

def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, n_train: int = 30, n_test: int = 20) -> Path:
    d = root / "MNIST" / "raw"
    d.mkdir(parents=True)
    g = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(d / f"{split}-images-idx3-ubyte", g.integers(0, 256, (n, 28, 28)))
        write_idx(d / f"{split}-labels-idx1-ubyte", g.integers(0, 10, n))
    return d


def fake_imagefolder(root: Path, classes, per_class: int = 1, size: int = 32) -> Path:
    from PIL import Image

    g = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(g.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def data_check(capsys, *names) -> tuple[int, str]:
    try:
        main(["data", "check", *names, "--strict"])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().out


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "data"
    r.mkdir()
    monkeypatch.setenv("BENCH_DATA", str(r))
    return r


# ---------------------------------------------------------------- 1. the decoded cache is verified

def _tamper(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"not a torch file at all")
    else:
        entry = torch.load(path, weights_only=True)
        if how == "altered":        # other pixels under the old hash
            entry["x_train"][0] ^= 1
        elif how == "wrong_shape":  # consistent hash, wrong shape
            from bench.data.store import SPLIT_KEYS, content_hash

            entry["x_train"] = entry["x_train"][:, :, :14]
            entry["sha256"] = content_hash(*(entry[k] for k in SPLIT_KEYS))
        torch.save(entry, path)


@pytest.mark.parametrize("how", ["altered", "truncated", "garbage", "wrong_shape"])
def test_a_damaged_cache_is_rebuilt_from_the_files_never_trusted(root, capsys, how):
    fake_mnist(root)
    first = load("mnist")
    cache_dir = Path(os.environ["BENCH_CACHE"]) / "data" / "mnist"
    (cache,) = cache_dir.glob("*.pt")
    stale = cache_dir / f".{cache.name}.abc123.tmp"   # left by a killed decoder
    stale.write_bytes(b"half")
    capsys.readouterr()
    _tamper(cache, how)

    again = load("mnist")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and str(cache) in err[0] and "rebuilding" in err[0], err
    assert torch.equal(again.train.x, first.train.x) and again.fingerprint["sha256"] == first.fingerprint["sha256"]
    assert not stale.exists()
    load("mnist")
    assert capsys.readouterr().err == ""   # the rebuilt cache is intact


def test_the_fingerprint_hash_is_recomputed_not_read(root):
    from bench.data.store import SPLIT_KEYS, content_hash

    fake_mnist(root)
    fp = load("mnist").fingerprint
    (cache,) = (Path(os.environ["BENCH_CACHE"]) / "data" / "mnist").glob("*.pt")
    entry = torch.load(cache, weights_only=True)
    assert entry["sha256"] == fp["sha256"] == content_hash(*(entry[k] for k in SPLIT_KEYS))


def test_planning_reads_no_data_file(root, monkeypatch):
    """available() (plan time) checks that every required file is present, reading none."""
    import builtins

    fake_mnist(root)

    def no_reads(*a, **k):
        raise AssertionError(f"planning opened {a[0]}")

    monkeypatch.setattr(builtins, "open", no_reads)
    assert available("mnist")
    (root / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    assert not available("mnist")


# ---------------------------------------------------------------- 3. bench data check: every file

@pytest.mark.parametrize("damage", ["truncated", "count_mismatch"])
def test_a_damaged_idx_file_is_reported_and_refused(root, capsys, damage):
    d = fake_mnist(root)
    bad = d / "t10k-images-idx3-ubyte"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:-100])
    else:
        write_idx(d / "t10k-labels-idx1-ubyte", np.zeros(19))
    code, out = data_check(capsys, "mnist")
    assert code == 1 and "BAD" in out
    if damage == "truncated":
        assert f"{bad} has" in out and "truncated" in out
        with pytest.raises(MissingDataError, match="truncated"):
            load("mnist")
    else:
        assert "t10k has 20 images but 19 labels" in out


def test_data_check_passes_on_sound_files_and_notes_unverified_ones(root, capsys):
    fake_mnist(root)
    code, out = data_check(capsys, "mnist")
    assert code == 0 and "BAD" not in out and "checksums differ from the original files" in out


def test_every_missing_cifar_file_is_named(root, capsys):
    d = root / "cifar-10-batches-py"
    d.mkdir()
    for name in KNOWN_MD5["cifar-10-batches-py"]:
        if name != "data_batch_3":
            (d / name).write_bytes(b"x")
    assert not available("cifar10")
    code, out = data_check(capsys, "cifar10")
    assert code == 1 and "cifar10: MISSING" in out and "lacks: data_batch_3" in out
    main(["data", "check", "cifar10"])   # without --strict it only reports


def test_cifar10c_checks_all_16_files(root, capsys):
    d = root / "CIFAR-10-C"
    d.mkdir()
    np.save(d / "labels.npy", np.zeros(10000, dtype=np.int64))
    for c in CIFAR10C_CORRUPTIONS:
        np.save(d / f"{c}.npy", np.zeros((5, 32, 32, 3), dtype=np.uint8))
    assert data_check(capsys, "cifar10c")[0] == 0
    fog = d / "fog.npy"
    fog.write_bytes(fog.read_bytes()[:-10])
    code, out = data_check(capsys, "cifar10c")
    assert code == 1 and f"{fog} is truncated" in out
    (d / "snow.npy").unlink()
    code, out = data_check(capsys, "cifar10c")
    assert code == 1 and "MISSING" in out and "lacks: snow.npy" in out


def test_svhn_mat_files_are_checked(root, capsys):
    from scipy.io import savemat

    d = root / "svhn"
    d.mkdir()
    for name in KNOWN_MD5["svhn"]:
        savemat(d / name, {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.arange(1, 5).reshape(4, 1)})
    code, out = data_check(capsys, "svhn")
    assert code == 0, out
    (d / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    code, out = data_check(capsys, "svhn")
    assert code == 1 and "test_32x32.mat cannot be read" in out


def test_tinyimagenet_layout_is_checked(root, capsys):
    from PIL import Image

    d = root / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(200)]
    (d / "val" / "images").mkdir(parents=True)
    (d / "wnids.txt").parent.mkdir(exist_ok=True)
    (d / "wnids.txt").write_text("\n".join(wnids))
    pixels = np.zeros((64, 64, 3), np.uint8)
    lines = []
    for i, w in enumerate(wnids):
        (d / "train" / w / "images").mkdir(parents=True)
        Image.fromarray(pixels).save(d / "train" / w / "images" / f"{w}_0.JPEG")
        Image.fromarray(pixels).save(d / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (d / "val" / "val_annotations.txt").write_text("\n".join(lines))
    assert data_check(capsys, "tinyimagenet200")[0] == 0
    (d / "val" / "images" / "val_7.JPEG").unlink()
    code, out = data_check(capsys, "tinyimagenet200")
    assert code == 1 and "1 of 200 lines name a missing image" in out and "val_7.JPEG" in out
    with pytest.raises(MissingDataError, match="val_7.JPEG"):
        load("tinyimagenet200")


# ---------------------------------------------------------------- 2. ImageFolder class folders

@pytest.mark.parametrize("fault,message", [
    ("missing", "lacks: train/truck"),                       # the 9 other classes are not a dataset
    ("misnamed", "lacks: train/truck"),
    ("extra", "unexpected folder(s) zebra (expected exactly cifar10's 10 classes: airplane automobile"),
    ("empty", "train/cat: no images"),
])
def test_cifar10_imagefolder_needs_exactly_its_classes(root, capsys, fault, message):
    d = fake_imagefolder(root / "cifar10", CIFAR10_CLASSES)
    if fault == "missing":
        for p in (d / "train" / "truck").iterdir():
            p.unlink()
        (d / "train" / "truck").rmdir()
    elif fault == "misnamed":
        (d / "train" / "truck").rename(d / "train" / "trucks")
    elif fault == "extra":
        (d / "train" / "zebra").mkdir()
        (d / "train" / "truck" / "0.png").rename(d / "train" / "zebra" / "0.png")
    elif fault == "empty":
        (d / "train" / "cat" / "0.png").unlink()
    with pytest.raises(MissingDataError) as e:
        load("cifar10")
    assert message in str(e.value)
    code, out = data_check(capsys, "cifar10")
    assert code == 1 and message in out


def test_imagefolder_without_known_class_names_needs_the_count_and_the_same_folders(root):
    names = [f"c{i:03d}" for i in range(200)]
    d = fake_imagefolder(root / "tinyimagenet200", names, size=64)
    assert load("tinyimagenet200").train.y.tolist() == list(range(200))
    (d / "test" / "c199").rename(d / "test" / "x199")
    with pytest.raises(MissingDataError, match="only in train: c199; only in test: x199"):
        load("tinyimagenet200")
    (d / "test" / "x199" / "0.png").unlink()
    (d / "test" / "x199").rmdir()
    with pytest.raises(MissingDataError, match="199 class folders, expected 200"):
        load("tinyimagenet200")


# ---------------------------------------------------------------- 4. no code from data files

def test_a_cifar_pickle_is_md5_checked_before_it_is_unpickled(root, tmp_path, capsys):
    d = root / "cifar-10-batches-py"
    d.mkdir()
    marker = tmp_path / MARKER
    for name in KNOWN_MD5["cifar-10-batches-py"]:
        (d / name).write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(MissingDataError) as e:
        load("cifar10")
    assert "md5" in str(e.value) and "refusing to unpickle" in str(e.value) and "data_batch_1" in str(e.value)
    code, out = data_check(capsys, "cifar10")
    assert code == 1 and out.count("will not be unpickled") == 6
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_the_pseudo_labelled_pickle_is_read_with_a_restricted_unpickler(root, protocol):
    g = np.random.default_rng(0)
    x = g.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = g.integers(0, 10, 6)
    with open(root / "ti_500K_pseudo_labeled.pickle", "wb") as f:
        pickle.dump({"data": x, "extrapolated_targets": y, "prediction_model": "x"}, f, protocol=protocol)
    data = load("ti500k")
    assert torch.equal(data.train.x, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    assert data.train.y.tolist() == y.tolist() and data.fingerprint["exact"] is None


def test_a_malicious_pseudo_labelled_pickle_is_refused(root, tmp_path):
    marker = tmp_path / MARKER
    with open(root / "ti_500K_pseudo_labeled.pickle", "wb") as f:
        pickle.dump({"data": Evil(marker), "extrapolated_targets": [0]}, f)
    with pytest.raises(MissingDataError, match=r"refusing to load (posix|os)\.system"):
        load("ti500k")
    assert not marker.exists()


# ---------------------------------------------------------------- 6. corrupt files: one line

def test_corrupt_json_names_the_file_and_what_to_do(tmp_path):
    path = write_json(tmp_path / "run.json", {"a": [1, 2, 3]})
    path.write_text(path.read_text()[:7])
    with pytest.raises(CorruptFileError, match=f"{path} is not valid JSON .*remove it and rerun"):
        read_json(path)


def test_cli_prints_one_line_for_a_corrupt_result(tmp_path):
    from bench import layout
    from bench.plan import Plan

    plan = Plan("smoke", papers=["hat"])
    ev = next(e for e in plan.evals.values() if "attack" in e.protocol)
    run_json = layout.run_dir("smoke", ev.run_id) / "run.json"
    run_json.parent.mkdir(parents=True)
    run_json.write_text('{"run_id": "trunc')
    out = subprocess.run([sys.executable, "-m", "bench", "evaluate", "--scale", "smoke", ev.run_id, ev.protocol_id],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"bench: error: {run_json} is not valid JSON (")
    assert line.endswith("it is truncated or corrupt; remove it and rerun")


def test_a_truncated_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "best.pt"
    checkpoint.save(path, tiny_model(), {"name": "resnet", "blocks": [1, 1, 1, 1], "width": 8}, 10, 3)
    checkpoint.load(path, torch.device("cpu"))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match=f"{path} cannot be read .*truncated or corrupt; remove it and rerun"):
        checkpoint.load(path, torch.device("cpu"))
    with pytest.raises(FileNotFoundError):
        torch_load(tmp_path / "absent.pt")


def test_disk_full_is_one_error_and_leaves_nothing_behind(tmp_path):
    def fill(tmp):   # a real ENOSPC from the kernel: /dev/full
        with open("/dev/full", "wb") as f:
            f.write(b"x" * (1 << 20))

    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(DiskFullError, match=f"no space left on device writing {target}: free space and rerun"):
        atomic_write(target, fill)
    assert list(target.parent.iterdir()) == []
    # torch_save writes through a Python file so that torch reports a full disk as ENOSPC
    with pytest.raises(OSError) as e, open("/dev/full", "wb") as f:
        torch.save({"w": torch.zeros(1 << 18)}, f)
    assert e.value.errno == errno.ENOSPC


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        a = write_json(tmp_path / "a.json", {})
        b = torch_save(tmp_path / "b.pt", {"x": torch.zeros(1)})
    finally:
        os.umask(old)
    assert (a.stat().st_mode & 0o777) == (b.stat().st_mode & 0o777) == 0o640


def test_ctrl_c_exits_130_quietly_and_leaves_no_temporaries(tmp_path):
    from bench import layout
    from bench.plan import Plan

    plan = Plan("smoke", papers=["hat"])
    run = next(r for r in plan.runs.values() if r.config["method"]["name"] == "pgd_at")
    run_dir = layout.run_dir("smoke", run.id)
    # SIGINT's default disposition in the child: a test run started in the background by a shell
    # (`pytest &`) would otherwise hand it an ignored SIGINT, which Python keeps
    proc = subprocess.Popen([sys.executable, "-m", "bench", "train", "--scale", "smoke", "--quiet", run.id],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (run_dir / "config.json").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    assert not (run_dir / "run.json").exists() and not list(run_dir.glob(".*.tmp"))


# ---------------------------------------------------------------- 7. locks and leftovers

HOLD = """
import sys, time
from pathlib import Path
from bench.fileio import locked
with locked(sys.argv[1]):
    Path(sys.argv[1], ".state.pt.live.tmp").write_text("being written")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(directory: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_and_never_deletes_a_live_writers_temporaries(tmp_path):
    d = tmp_path / "runs" / "r1"
    holder = hold(d, 60)
    try:
        with pytest.raises(LockedError, match=f"{d} is being written by another process \\(pid {holder.pid}\\)"):
            with locked(d):
                pass
        assert (d / ".state.pt.live.tmp").exists()
    finally:
        holder.kill()
        holder.wait()
    with locked(d):   # the holder is gone: its temporary is stale now, and removed
        assert not (d / ".state.pt.live.tmp").exists()


def test_a_waiting_locker_gets_the_folder_when_the_holder_ends(tmp_path):
    holder = hold(tmp_path, 1.0)
    t0 = time.monotonic()
    with locked(tmp_path, wait=60):
        assert time.monotonic() - t0 < 30
    holder.wait()


def test_a_named_lock_removes_only_its_own_outputs_temporaries(tmp_path):
    mine = [tmp_path / ".aa.json.1.tmp", tmp_path / ".aa.partial.json.2.tmp"]
    others = [tmp_path / ".aa-x1.json.3.tmp", tmp_path / ".pgd20.json.4.tmp"]
    for p in mine + others:
        p.write_text("x")
    with locked(tmp_path, "aa"):
        assert not any(p.exists() for p in mine) and all(p.exists() for p in others)


def test_a_trainer_refuses_a_run_folder_another_trainer_writes(tmp_path):
    from bench.train import train

    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(CONFIG))
    run_dir = tmp_path / "run"
    proc = start(cfg_path, run_dir, tmp_path / "a.log")
    try:
        deadline = time.time() + 120
        while not (run_dir / "config.json").exists() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockedError, match=f"pid {proc.pid}"):
            train("resume-test", CONFIG, run_dir, progress=False)
    finally:
        proc.kill()
        proc.wait()


def test_an_evaluation_removes_its_stale_temporaries(tmp_path):
    from bench.evaluate import run_protocol
    from bench.train import train

    cfg = {**CONFIG, "epochs": 1, "data": {"source": "synthetic", "synthetic_size": [64, 32]}}
    rdir = Path(os.environ["BENCH_RESULTS"]) / "smoke" / "runs" / "r"
    train("r", cfg, rdir, progress=False)
    out = Path(os.environ["BENCH_RESULTS"]) / "smoke" / "evals" / "r" / "pgd.json"
    out.parent.mkdir(parents=True)
    stale, other = out.parent / ".pgd.json.k1.tmp", out.parent / ".aa.json.k2.tmp"
    stale.write_text("x"), other.write_text("x")
    run_protocol("smoke", "r", cfg, "pgd", {"attack": {"name": "pgd", "steps": 1}, "n_test": 8}, out, progress=False)
    assert out.exists() and not stale.exists() and other.exists()


# ---------------------------------------------------------------- 8. checkpoints rewritten from state.pt

def test_deleted_checkpoints_are_rewritten_from_state_without_retraining(tmp_path, capfd):
    from bench.train import train

    cfg = {**CONFIG, "epochs": 2, "data": {"source": "synthetic", "synthetic_size": [128, 32]}}
    first = train("r", cfg, tmp_path, progress=False)
    before = {n: torch.load(tmp_path / n, weights_only=True) for n in ("best.pt", "last.pt")}
    for name in ("best.pt", "last.pt", "run.json"):   # what Snakemake removes before rerunning the job
        (tmp_path / name).unlink()
    capfd.readouterr()
    again = train("r", cfg, tmp_path, progress=False)
    assert "resuming after epoch 2/2" in capfd.readouterr().err
    assert again["best"] == first["best"]
    for name, ckpt in before.items():
        after = torch.load(tmp_path / name, weights_only=True)
        assert after["epoch"] == ckpt["epoch"] and after.get("metric") == ckpt.get("metric")
        assert all(torch.equal(after["model"][k], v) for k, v in ckpt["model"].items()), name
