"""The decoded-image store: the pixels read_image gives, decoded once; packs written atomically,
shared between processes, rebuilt when a file changes, when damaged or when another decoder
wrote them; a full disk or an unreadable image gets one clear message."""
import glob
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from dassl.data.image_store import DecodedImages, decoder_description, open_pack, read_image, write_pack
from dassl.utils.errors import UserError
from tests.engine_helpers import REPO


def images(folder, n=5):
    """JPEG, PNG with alpha, palette PNG and grey JPEG files: every path through convert("RGB")."""
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 256, size=(9 + i, 14 + 3 * i, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
        kind = i % 4
        if kind == 1:
            img = img.convert("RGBA")
        elif kind == 2:
            img = img.convert("P")
        elif kind == 3:
            img = img.convert("L")
        path = folder / f"im{i}.{'png' if kind in (1, 2) else 'jpg'}"
        img.save(path)
        paths.append(str(path))
    return paths


def store(paths, root, mode="disk"):
    s = DecodedImages(paths, mode=mode, root=str(root), describe=lambda i: f"entry {i} of split.json")
    s.fill()
    return s


def assert_same_pixels(s, paths):
    for i, path in enumerate(paths):
        stored, decoded = s.image(i), read_image(path)
        assert stored.mode == decoded.mode == "RGB" and stored.size == decoded.size
        assert stored.tobytes() == decoded.tobytes()


@pytest.mark.parametrize("mode", ["memory", "disk", "auto"])
def test_store_gives_the_decoded_pixels(tmp_path, capsys, mode):
    paths = images(tmp_path)
    s = store(paths, tmp_path / "store", mode)
    assert s.used == ("memory" if mode == "auto" else mode)
    assert_same_pixels(s, paths)
    if mode == "disk":
        assert "decoded once into" in capsys.readouterr().out
        again = store(paths, tmp_path / "store")
        assert "mapped from" in capsys.readouterr().out
        assert_same_pixels(again, paths)


def test_auto_goes_to_disk_above_the_memory_budget(tmp_path):
    paths = images(tmp_path)
    s = DecodedImages(paths, mode="auto", root=str(tmp_path / "store"), memory_mb=0)
    s.fill()
    assert s.used == "disk" and glob.glob(str(tmp_path / "store" / "packs" / "*.pixels"))


def test_changed_file_gets_a_new_pack(tmp_path, capsys):
    paths = images(tmp_path)
    store(paths, tmp_path / "store")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(paths[0])
    capsys.readouterr()
    s = store(paths, tmp_path / "store")
    assert "decoded once into" in capsys.readouterr().out
    assert_same_pixels(s, paths)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_pack_is_rebuilt(tmp_path, capsys, damage):
    paths = images(tmp_path)
    store(paths, tmp_path / "store")
    (pack,) = glob.glob(str(tmp_path / "store" / "packs" / "*.pixels"))
    data = bytearray(open(pack, "rb").read())
    if damage == "truncate":
        data = data[:len(data) // 2]
    else:
        data[200] ^= 0xFF  # a pixel of the first image
    open(pack, "wb").write(bytes(data))
    capsys.readouterr()
    s = store(paths, tmp_path / "store")
    out = capsys.readouterr().out
    assert f"{pack} is damaged" in out and "decoded once into" in out
    assert_same_pixels(s, paths)


def test_pack_of_another_decoder_is_rebuilt_and_said_once(tmp_path, capsys):
    paths = images(tmp_path)
    store(paths, tmp_path / "store")
    (pack,) = glob.glob(str(tmp_path / "store" / "packs" / "*.pixels"))
    header, views = open_pack(pack)
    other = dict(decoder_description(), pillow="9.0.0", jpg="8.0")
    write_pack(pack, other, header["digests"], [np.array(v) for v in views], [v.shape[:2] for v in views])
    capsys.readouterr()
    s = store(paths, tmp_path / "store")
    out = capsys.readouterr().out
    assert out.count("was decoded by pillow 9.0.0") == 1 and "decoding its images again" in out
    assert open_pack(pack)[0]["decoder"] == decoder_description()
    assert_same_pixels(s, paths)
    store(paths, tmp_path / "store")
    assert "was decoded by" not in capsys.readouterr().out


def test_unreadable_image_names_the_file_and_its_split_entry(tmp_path):
    paths = images(tmp_path)
    open(paths[2], "wb").write(b"not an image")
    for mode in ("memory", "disk"):
        with pytest.raises(UserError) as error:
            store(paths, tmp_path / "store", mode)
        assert f'Cannot read image "{paths[2]}"' in str(error.value) and "entry 2 of split.json" in str(error.value)


def test_pack_follows_the_umask(tmp_path):
    paths = images(tmp_path)
    old = os.umask(0o002)
    try:
        store(paths, tmp_path / "store")
    finally:
        os.umask(old)
    (pack,) = glob.glob(str(tmp_path / "store" / "packs" / "*.pixels"))
    assert stat.S_IMODE(os.stat(pack).st_mode) == 0o664


FILL = textwrap.dedent("""
    import resource, sys
    from dassl.data.image_store import DecodedImages, read_image
    if len(sys.argv) > 3:
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
    paths = open(sys.argv[1]).read().split()
    s = DecodedImages(paths, mode="disk", root=sys.argv[2])
    s.fill()
    assert all(s.image(i).tobytes() == read_image(p).tobytes() for i, p in enumerate(paths))
    print("used", s.used)
""")


def fill_process(tmp_path, paths, *extra):
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(paths))
    return subprocess.Popen([sys.executable, "-c", FILL, str(listing), str(tmp_path / "store"), *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_processes_build_the_pack_once(tmp_path):
    paths = images(tmp_path, n=12)
    procs = [fill_process(tmp_path, paths) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    stdout = "".join(out for out, _ in outs)
    assert stdout.count("decoded once into") == 1 and stdout.count("mapped from") == 2
    assert stdout.count("used disk") == 3
    assert not glob.glob(str(tmp_path / "store" / "packs" / "*.tmp"))


def test_full_disk_says_so_keeps_training_exact_and_loses_nothing(tmp_path):
    paths = images(tmp_path, n=12)
    proc = fill_process(tmp_path, paths, "4000")  # writes past 4 kB fail (EFBIG), as on a full disk
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("Image store")]
    assert len(lines) == 1 and "cannot write the decoded images" in lines[0] and "Free space under" in lines[0]
    assert "used off" in out and "Traceback" not in err
    packs = tmp_path / "store" / "packs"
    assert not glob.glob(str(packs / "*.pixels")) and not glob.glob(str(packs / "*.tmp"))  # no partial pack
