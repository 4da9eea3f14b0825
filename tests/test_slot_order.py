"""`dinoxfer channels check` ranks slot orders by what a backbone's features say about labelled HPA images, `record`
writes the winner into the manifest, and the backbone loader then uses it."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dinoxfer_lib.cli import main
from dinoxfer_lib.data import manifests
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.models.backbones import PRETRAINED, create_backbone
from dinoxfer_lib.models.slot_order import CANDIDATE_ORDERS, SlotOrderRanking, slot_order
from dinoxfer_lib.pipeline import open_run
from dinoxfer_lib.pipeline.backbones import resolve_backbone

SIZE = 32
WEIGHTS = "dino4cells_hpa_fov"


def write_hpa(root, *, informative, n=24, seed=0):
    """HPA Kaggle folder whose labels (class 0 or 1) show only in the ``informative`` colour, as vertical or
    horizontal stripes (a texture inside every patch: a random ViT barely sees where a patch is); the others are
    noise."""
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        label = i % 2
        for colour in ("red", "green", "blue", "yellow"):
            plane = rng.normal(60, 20, (SIZE, SIZE))
            if colour == informative:
                plane += 150 * ((xx // 2 % 2) if label == 0 else (yy // 2 % 2))
            Image.fromarray(plane.clip(0, 255).astype(np.uint8)).save(root / "train" / f"i{i}_{colour}.png")
        rows.append({"Id": f"i{i}", "Target": str(label)})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)


def fake_checkpoint(cache):
    """A 4-channel ViT whose patch filters read input slot 0 only: it sees whichever stain an order puts there."""
    torch.manual_seed(0)
    model = create_backbone("vit_micro", in_chans=4, img_size=SIZE)
    with torch.no_grad():
        model.patch_embed.proj.weight[:, 1:] = 0
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}},
               cache / PRETRAINED[WEIGHTS].filename)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """Fake weights in the download cache and a private copy of the manifest folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fake_checkpoint(tmp_path / "xdg" / "dinoxfer")
    shutil.copytree(manifests.MANIFEST_DIR, tmp_path / "manifests")
    monkeypatch.setattr(manifests, "MANIFEST_DIR", tmp_path / "manifests")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check(tmp_path, data, capsys):
    assert main(["channels", "check", "--data", str(data), "--n-images", "24", "--k", "3", "--img-size", str(SIZE),
                 "--device", "cpu", "--batch-size", "8"]) == 0
    return capsys.readouterr().out


# The stain in slot 0 is the nucleus (blue) under DINO4Cells' config order and the microtubules (red) under the
# Kaggle file order: whichever colour carries the labels decides the ranking.
@pytest.mark.parametrize("informative, best", [("blue", "dino4cells_config"), ("red", "kaggle_files")])
def test_check_ranks_the_order_that_puts_the_informative_stain_where_the_backbone_looks(
        setup, capsys, informative, best):
    write_hpa(setup / "hpa", informative=informative)
    out = check(setup, setup / "hpa", capsys)
    ranking = SlotOrderRanking.load(setup / f"channels_check_{WEIGHTS}.json")
    assert ranking.orders[0][0] == best and ranking.best == CANDIDATE_ORDERS[best]
    assert ranking.orders[0][2] > ranking.orders[1][2] + 0.2 and ranking.wins > 0.9
    assert ranking.n_images == 24 and ranking.k == 3
    assert f"dinoxfer channels record channels_check_{WEIGHTS}.json" in out
    assert out.index(best) < out.index(next(name for name in CANDIDATE_ORDERS if name != best))


def test_record_writes_the_winner_and_the_loader_uses_it(setup, capsys):
    assert slot_order(WEIGHTS).slots == PRETRAINED[WEIGHTS].slots and not slot_order(WEIGHTS).checked
    run = open_run("smoke", {"embed": {"hpa_weights": WEIGHTS, "img_size": SIZE}}, runs_root=setup / "runs")
    assert resolve_backbone(run, "hpa").slots == PRETRAINED[WEIGHTS].slots

    write_hpa(setup / "hpa", informative="red")
    check(setup, setup / "hpa", capsys)
    manifest = setup / "manifests" / f"{WEIGHTS}.yaml"
    before = manifest.read_text()
    for _ in range(2):  # recording twice replaces the block, it does not add a second one
        assert main(["channels", "record", f"channels_check_{WEIGHTS}.json"]) == 0
    assert manifest.read_text().count("slot_order:") == 1 and manifest.read_text().startswith(before.rstrip("\n"))
    recorded = slot_order(WEIGHTS)
    assert recorded.slots == CANDIDATE_ORDERS["kaggle_files"] and recorded.checked
    assert recorded.evidence["n_images"] == 24 and "kaggle_files" in recorded.evidence["macro_f1"]
    assert "checked on" in recorded.sentence() and "microtubules, protein, nucleus, er" in recorded.sentence()
    assert resolve_backbone(run, "hpa").slots == CANDIDATE_ORDERS["kaggle_files"]

    main(["channels", "show"])
    assert recorded.sentence() in capsys.readouterr().out


def test_unchecked_sentence_and_a_bad_recorded_order(setup):
    assert "not been checked" in slot_order(WEIGHTS).sentence()
    manifest = setup / "manifests" / f"{WEIGHTS}.yaml"
    manifest.write_text(manifest.read_text() + "slot_order:\n  slots: [nucleus, protein, protein, er]\n")
    with pytest.raises(DataError, match="slot_order.slots .* expected a permutation of nucleus, protein"):
        slot_order(WEIGHTS)


def test_record_refuses_a_file_that_is_not_a_ranking(setup, capsys):
    (setup / "junk.json").write_text("{}")
    assert main(["channels", "record", "junk.json"]) == 2
    assert "junk.json: not a ranking written by `dinoxfer channels check`" in capsys.readouterr().err
