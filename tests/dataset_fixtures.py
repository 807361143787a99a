"""Miniature but faithful on-disk copies of every benchmark dataset, for tests.

Public API (kept stable: other test modules train and evaluate on these trees):

    write_fixture(root, name, n_classes=None, per_class=6, with_split=True,
                  imagenet_classes=None) -> dataset_dir
        Writes the layout of DATASET.NAME `name` under `root/<folder>` (the folder
        DATASET.ROOT expects) with real tiny JPEG files (32x32) and returns that folder.
        `n_classes=None` uses the dataset's default (enough to cover its awkward names).
        `with_split=False` leaves out the split_zhou_*.json (raw annotation lists are
        always written, so the dataset can build its own split).
        ImageNetA/R: `imagenet_classes` is the size of the ImageNet class universe their
        classnames.txt lists (default 2 * n_classes); write ImageNet with
        n_classes=imagenet_classes to evaluate an ImageNet fixture model on them.
    DATASET_NAMES                       every name write_fixture accepts
    expected_classnames(name, n_classes=None, imagenet_classes=None) -> names in label order
    imagenet_subset_classnames(name, n_classes=None, imagenet_classes=None)
        -> (A/R class names, their labels in the ImageNet fixture)
    split_file_name(name) -> "split_zhou_<Name>.json" or None
    fixture_counts(name, n_classes=None, per_class=6) -> {"train", "val", "test"} sizes
    class_colour(index, n_total) -> RGB of a class (images differ by class colour,
        so a tiny model can learn them; ImageNet variants colour by ImageNet label)
    dataset_cfg(root, name, num_shots=-1, seed=1, subsample="all") -> frozen-able cfg with
        the CLIP keys, ready for `dassl.data.datasets.build_dataset` / DataManager

Each dataset's pool starts with its real, awkward class names (Caltech101 renames and
ignored folders, SUN397 nested paths, UCF101 CamelCase, ...); asking for more classes
than the pool holds adds synthetic ones that sort after the real ones.
The .mat annotation files of OxfordFlowers and StanfordCars are not written (writing
them needs scipy), so those two can only be built from their split files.
"""
import colorsys
import json
import os

from PIL import Image, ImageDraw

IMAGE_SIZE = 32
DEFAULT_PER_CLASS = 6

# (raw name as it appears on disk / in annotation files, class name the dataset must report)
_CALTECH = [("Faces", "face"), ("Leopards", "leopard"), ("Motorbikes", "motorbike"),
            ("accordion", "accordion"), ("airplanes", "airplane"), ("anchor", "anchor"),
            ("ant", "ant"), ("barrel", "barrel")]
_CALTECH_IGNORED = ["BACKGROUND_Google", "Faces_easy"]
_PETS = [("Abyssinian", "abyssinian"), ("american_bulldog", "american_bulldog"),
         ("american_pit_bull_terrier", "american_pit_bull_terrier"),
         ("basset_hound", "basset_hound"), ("beagle", "beagle"), ("Bengal", "bengal"),
         ("Birman", "birman"), ("boxer", "boxer")]
_CARS = [("AM General Hummer SUV 2000", "2000 AM General Hummer SUV"),
         ("Acura RL Sedan 2012", "2012 Acura RL Sedan"),
         ("Acura TL Type-S 2008", "2008 Acura TL Type-S"),
         ("Aston Martin V8 Vantage Convertible 2012", "2012 Aston Martin V8 Vantage Convertible"),
         ("Audi S4 Sedan 2007", "2007 Audi S4 Sedan")]
_FLOWERS = [("1", "pink primrose"), ("2", "hard-leaved pocket orchid"), ("3", "canterbury bells"),
            ("4", "sweet pea"), ("5", "english marigold"), ("6", "tiger lily")]
_FOOD = [(n, n) for n in ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio",
                          "beef_tartare", "beet_salad"]]
_AIRCRAFT = [(n, n) for n in ["707-320", "A300B4", "BAE 146-200", "Cessna 172", "F/A-18",
                              "Falcon 2000"]]
_SUN = [("a/abbey", "abbey"), ("a/airplane_cabin", "airplane_cabin"),
        ("a/apartment_building/outdoor", "outdoor apartment_building"),
        ("b/bakery/shop", "shop bakery"), ("c/church/indoor", "indoor church")]
_DTD = [(n, n) for n in ["banded", "blotchy", "braided", "bubbly", "bumpy"]]
_EUROSAT = [("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"),
            ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
            ("Highway", "Highway or Road"), ("Industrial", "Industrial Buildings"),
            ("Pasture", "Pasture Land"), ("PermanentCrop", "Permanent Crop Land"),
            ("Residential", "Residential Buildings"), ("River", "River"),
            ("SeaLake", "Sea or Lake")]
_UCF = [("ApplyEyeMakeup", "Apply_Eye_Makeup"), ("BabyCrawling", "Baby_Crawling"),
        ("HandstandPushups", "Handstand_Pushups"), ("PlayingDaf", "Playing_Daf"),
        ("YoYo", "Yo_Yo")]
_IMAGENET = [("n01440764", "tench"), ("n01443537", "goldfish"),
             ("n01484850", "great white shark"), ("n01491361", "tiger shark"),
             ("n01494475", "hammerhead shark"), ("n01496331", "electric ray"),
             ("n01498041", "stingray"), ("n01514668", "rooster"), ("n01514859", "hen"),
             ("n01518878", "ostrich"), ("n01530575", "brambling"), ("n01531178", "goldfinch")]


def _extra(name, i):
    """Synthetic class i (beyond the real pool) in the dataset's own naming style."""
    n = f"{i:03d}"
    return {
        "Caltech101": (f"zextra{n}", f"zextra{n}"),
        "OxfordPets": (f"zextra_breed{n}", f"zextra_breed{n}"),
        "StanfordCars": (f"Zextra Coupe {n} 2020", f"2020 Zextra Coupe {n}"),
        "OxfordFlowers": (None, f"extra flower {n}"),
        "Food101": (f"zextra_dish{n}", f"zextra_dish{n}"),
        "FGVCAircraft": (f"ZX-{n}", f"ZX-{n}"),
        "SUN397": (f"z/zextra{n}", f"zextra{n}"),
        "DescribableTextures": (f"zextra{n}", f"zextra{n}"),
        "UCF101": (f"ZextraAction{n}", f"Zextra_Action{n}"),
        "ImageNet": (f"n9{i:07d}", f"extra object {n}"),
    }[name]


# name -> (folder under DATASET.ROOT, real pool, default n_classes)
_DATASETS = {
    "Caltech101": ("caltech-101", _CALTECH, 5),
    "OxfordPets": ("oxford_pets", _PETS, 6),
    "StanfordCars": ("stanford_cars", _CARS, 4),
    "OxfordFlowers": ("oxford_flowers", _FLOWERS, 4),
    "Food101": ("food-101", _FOOD, 4),
    "FGVCAircraft": ("fgvc_aircraft", _AIRCRAFT, 6),
    "SUN397": ("sun397", _SUN, 5),
    "DescribableTextures": ("dtd", _DTD, 4),
    "EuroSAT": ("eurosat", _EUROSAT, 10),
    "UCF101": ("ucf101", _UCF, 5),
    "ImageNet": ("imagenet", _IMAGENET, 6),
    # 12 classes so folder "10" and "11" catch a string sort of ImageNetV2's numbered folders.
    "ImageNetV2": ("imagenetv2", _IMAGENET, 12),
    "ImageNetSketch": ("imagenet-sketch", _IMAGENET, 4),
    "ImageNetA": ("imagenet-adversarial", _IMAGENET, 3),
    "ImageNetR": ("imagenet-rendition", _IMAGENET, 3),
}
DATASET_NAMES = sorted(_DATASETS)
_TEST_ONLY = {"ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"}


def _classes(name, n_classes):
    """[(raw, classname)] for n classes: the real pool first, synthetic ones after."""
    _, pool, default = _DATASETS[name]
    n = default if n_classes is None else n_classes
    if n < 1:
        raise ValueError(f"n_classes must be >= 1, got {n}")
    if name == "EuroSAT" and n > len(pool):
        raise ValueError(f"EuroSAT has exactly {len(pool)} classes, asked for {n}")
    key = "ImageNet" if name.startswith("ImageNet") else name
    out = list(pool[:n])
    for i in range(len(out), n):
        raw, cname = _extra(key, i)
        if name == "OxfordFlowers":
            raw = str(i + 1)
        out.append((raw, cname))
    return out


def _subset_indices(n_subset, universe):
    """ImageNet labels of the A/R subset: odd labels first (non-contiguous on purpose)."""
    if n_subset > universe:
        raise ValueError(f"an ImageNet subset of {n_subset} classes needs imagenet_classes "
                         f">= {n_subset}, got {universe}")
    order = list(range(1, universe, 2)) + list(range(0, universe, 2))
    return sorted(order[:n_subset])


def expected_classnames(name, n_classes=None, imagenet_classes=None):
    """Class names (label order) that the dataset class must report for this fixture."""
    if name in ("ImageNetA", "ImageNetR"):
        return imagenet_subset_classnames(name, n_classes, imagenet_classes)[0]
    return [cname for _, cname in _classes(name, n_classes)]


def split_sizes(per_class):
    """Per-class (train, val, test) sizes of the fixture's split files (50/20/30, each >= 1)."""
    if per_class < 3:
        raise ValueError(f"per_class must be >= 3 so train, val and test are non-empty, got {per_class}")
    n_val = max(1, round(per_class * 0.2))
    n_test = max(1, round(per_class * 0.3))
    return per_class - n_val - n_test, n_val, n_test


def _imagenet_val_per_class(per_class):
    return max(2, per_class // 2)


def fixture_counts(name, n_classes=None, per_class=DEFAULT_PER_CLASS):
    """Number of items the dataset reports per split (before few-shot sampling)."""
    n = len(_classes(name, n_classes))
    if name in _TEST_ONLY:
        return {"train": n * per_class, "val": 0, "test": n * per_class}
    if name == "ImageNet":
        n_val = n * _imagenet_val_per_class(per_class)
        return {"train": n * per_class, "val": n_val, "test": n_val}
    tr, va, te = split_sizes(per_class)
    return {"train": n * tr, "val": n * va, "test": n * te}


def class_colour(index, n_total):
    """Distinct, saturated RGB per class index (hue spread over the class count)."""
    r, g, b = colorsys.hsv_to_rgb(index / max(n_total, 1), 0.85, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def _write_image(path, colour_index, n_total, image_index):
    """A class-coloured 32x32 JPEG; a small bright square moves with the image index."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), class_colour(colour_index, n_total))
    x = (image_index * 7) % (IMAGE_SIZE - 6)
    ImageDraw.Draw(img).rectangle([x, x // 2, x + 5, x // 2 + 5], fill=(245, 245, 245))
    img.save(path, format="JPEG", quality=95)


def _write_text(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=4)


def _split_items(per_class_items, per_class):
    """Cut each class's [(relpath, label, cname)] into train/val/test, classes in list order."""
    n_tr, n_va, _ = split_sizes(per_class)
    split = {"train": [], "val": [], "test": []}
    for items in per_class_items:
        split["train"] += items[:n_tr]
        split["val"] += items[n_tr:n_tr + n_va]
        split["test"] += items[n_tr + n_va:]
    return split


def _folder_dataset(image_dir, classes, per_class, filename, rename=None):
    """Class-subfolder datasets (Caltech101, Food101, DTD, EuroSAT): write images and
    return per-class split items in label order (= sorted folder order)."""
    classes = sorted(classes)
    out = []
    for label, (raw, cname) in enumerate(classes):
        items = []
        for i in range(per_class):
            rel = f"{raw}/{filename(raw, i)}"
            _write_image(os.path.join(image_dir, rel), label, len(classes), i)
            items.append([rel, label, cname])
        out.append(items)
    return out


def _write_caltech(d, classes, per_class):
    image_dir = os.path.join(d, "101_ObjectCategories")
    for k, ignored in enumerate(_CALTECH_IGNORED):
        for i in range(2):
            _write_image(os.path.join(image_dir, ignored, f"image_{i + 1:04d}.jpg"), k, 2, i)
    return _split_items(_folder_dataset(image_dir, classes, per_class,
                                        lambda raw, i: f"image_{i + 1:04d}.jpg"), per_class)


def _write_food(d, classes, per_class):
    items = _folder_dataset(os.path.join(d, "images"), classes, per_class,
                            lambda raw, i: f"{100000 + 37 * i}.jpg")
    return _split_items(items, per_class)


def _write_dtd(d, classes, per_class):
    items = _folder_dataset(os.path.join(d, "images"), classes, per_class,
                            lambda raw, i: f"{raw}_{i + 1:04d}.jpg")
    return _split_items(items, per_class)


def _write_eurosat(d, classes, per_class):
    items = _folder_dataset(os.path.join(d, "2750"), classes, per_class,
                            lambda raw, i: f"{raw}_{i + 1}.jpg")
    return _split_items(items, per_class)


def _write_pets(d, classes, per_class):
    """images/<Breed>_<n>.jpg; annotations/{trainval,test}.txt: 'name classid species breedid'.
    Cats are the capitalised breeds (species 1), dogs lower case (species 2)."""
    tr, va, te = split_sizes(per_class)
    trainval, test, per_class_items = [], [], []
    breed_ids = {1: 0, 2: 0}
    for label, (raw, cname) in enumerate(classes):
        species = 1 if raw[0].isupper() else 2
        breed_ids[species] += 1
        items = []
        for i in range(per_class):
            stem = f"{raw}_{i + 1}"
            _write_image(os.path.join(d, "images", stem + ".jpg"), label, len(classes), i)
            line = f"{stem} {label + 1} {species} {breed_ids[species]}"
            (trainval if i < tr + va else test).append(line)
            items.append([stem + ".jpg", label, cname])
        per_class_items.append(items)
    _write_text(os.path.join(d, "annotations", "trainval.txt"), trainval)
    _write_text(os.path.join(d, "annotations", "test.txt"), test)
    return _split_items(per_class_items, per_class)


def _write_cars(d, classes, per_class):
    """cars_train/ and cars_test/ with numbered files; split paths relative to the dataset folder."""
    tr, va, _ = split_sizes(per_class)
    counters = {"cars_train": 0, "cars_test": 0}
    per_class_items = []
    for label, (_, cname) in enumerate(classes):
        items = []
        for i in range(per_class):
            folder = "cars_train" if i < tr + va else "cars_test"
            counters[folder] += 1
            rel = f"{folder}/{counters[folder]:05d}.jpg"
            _write_image(os.path.join(d, rel), label, len(classes), i)
            items.append([rel, label, cname])
        per_class_items.append(items)
    return _split_items(per_class_items, per_class)


def _write_flowers(d, classes, per_class):
    """jpg/image_NNNNN.jpg, cat_to_name.json keyed by 1-based id. Like the real split file,
    classes first appear in a non-sorted order (here: reversed)."""
    _write_json(os.path.join(d, "cat_to_name.json"), {raw: cname for raw, cname in classes})
    per_class_items = []
    n = 0
    for label, (_, cname) in enumerate(classes):
        items = []
        for i in range(per_class):
            n += 1
            rel = f"image_{n:05d}.jpg"
            _write_image(os.path.join(d, "jpg", rel), label, len(classes), i)
            items.append([rel, label, cname])
        per_class_items.append(items)
    return _split_items(per_class_items[::-1], per_class)


def _write_aircraft(d, classes, per_class):
    """images/<7-digit id>.jpg; variants.txt (label order); images_variant_<split>.txt
    lines '<id> <variant with spaces>'. No split json: the txt lists are the split."""
    _write_text(os.path.join(d, "variants.txt"), [raw for raw, _ in classes])
    split = _split_items([[(f"{1000000 + 100 * label + i:07d}", label, raw) for i in range(per_class)]
                          for label, (raw, _) in enumerate(classes)], per_class)
    for name, items in split.items():
        for k, (stem, label, _) in enumerate(items):
            _write_image(os.path.join(d, "images", stem + ".jpg"), label, len(classes), k)
        _write_text(os.path.join(d, f"images_variant_{name}.txt"), [f"{s} {v}" for s, _, v in items])
    return None


def _write_sun(d, classes, per_class):
    """SUN397/<letter>/<name>[/<sub>]/sun_*.jpg; ClassName.txt, Training_01.txt, Testing_01.txt."""
    tr, va, _ = split_sizes(per_class)
    per_class_items, training, testing = [], [], []
    for label, (raw, cname) in enumerate(classes):
        items = []
        for i in range(per_class):
            rel = f"{raw}/sun_a{label:03d}{i:04d}.jpg"
            _write_image(os.path.join(d, "SUN397", rel), label, len(classes), i)
            (training if i < tr + va else testing).append("/" + rel)
            items.append([rel, label, cname])
        per_class_items.append(items)
    _write_text(os.path.join(d, "ClassName.txt"), ["/" + raw for raw, _ in classes])
    _write_text(os.path.join(d, "Training_01.txt"), training)
    _write_text(os.path.join(d, "Testing_01.txt"), testing)
    return _split_items(per_class_items, per_class)


def _write_ucf(d, classes, per_class):
    """UCF-101-midframes/<Renamed_Action>/v_<Action>_gGG_c01.jpg and ucfTrainTestlist/."""
    tr, va, _ = split_sizes(per_class)
    per_class_items, trainlist, testlist = [], [], []
    for label, (raw, cname) in enumerate(classes):
        items = []
        for i in range(per_class):
            stem = f"v_{raw}_g{i + 1:02d}_c01"
            _write_image(os.path.join(d, "UCF-101-midframes", cname, stem + ".jpg"),
                         label, len(classes), i)
            if i < tr + va:
                trainlist.append(f"{raw}/{stem}.avi {label + 1}")
            else:
                testlist.append(f"{raw}/{stem}.avi")
            items.append([f"{cname}/{stem}.jpg", label, cname])
        per_class_items.append(items)
    lists = os.path.join(d, "ucfTrainTestlist")
    _write_text(os.path.join(lists, "classInd.txt"), [f"{k + 1} {raw}" for k, (raw, _) in enumerate(classes)])
    _write_text(os.path.join(lists, "trainlist01.txt"), trainlist)
    _write_text(os.path.join(lists, "testlist01.txt"), testlist)
    return _split_items(per_class_items, per_class)


def _classnames_lines(classes):
    return [f"{wnid} {cname}" for wnid, cname in classes]


def _write_imagenet(d, classes, per_class):
    """images/{train,val}/<wnid>/*.JPEG and classnames.txt ('wnid name words')."""
    _write_text(os.path.join(d, "classnames.txt"), _classnames_lines(classes))
    n_val = _imagenet_val_per_class(per_class)
    for label, (wnid, _) in enumerate(classes):
        for i in range(per_class):
            _write_image(os.path.join(d, "images", "train", wnid, f"{wnid}_{10000 + i}.JPEG"),
                         label, len(classes), i)
        for i in range(n_val):
            _write_image(os.path.join(d, "images", "val", wnid,
                                      f"ILSVRC2012_val_{label * 100 + i + 1:08d}.JPEG"),
                         label, len(classes), i)
    return None


def _write_imagenet_v2(d, classes, per_class):
    """imagenetv2-matched-frequency-format-val/<0..n-1>/<hash>.jpeg; label = folder number."""
    _write_text(os.path.join(d, "classnames.txt"), _classnames_lines(classes))
    for label in range(len(classes)):
        for i in range(per_class):
            _write_image(os.path.join(d, "imagenetv2-matched-frequency-format-val", str(label),
                                      f"{label:04x}{i:036x}.jpeg"), label, len(classes), i)
    return None


def _write_imagenet_sketch(d, classes, per_class):
    _write_text(os.path.join(d, "classnames.txt"), _classnames_lines(classes))
    for label, (wnid, _) in enumerate(classes):
        for i in range(per_class):
            _write_image(os.path.join(d, "images", wnid, f"sketch_{i + 1}.JPEG"),
                         label, len(classes), i)
    return None


def _write_imagenet_subset(d, image_folder, n_subset, universe, per_class):
    """ImageNet-A/R: 200-of-1000 wnid folders (+ README.txt); classnames.txt lists all 1000."""
    everything = _classes("ImageNet", universe)
    _write_text(os.path.join(d, "classnames.txt"), _classnames_lines(everything))
    _write_text(os.path.join(d, image_folder, "README.txt"), ["not a class folder"])
    for imagenet_label in _subset_indices(n_subset, universe):
        wnid = everything[imagenet_label][0]
        for i in range(per_class):
            _write_image(os.path.join(d, image_folder, wnid, f"{i:04d}.jpg"),
                         imagenet_label, universe, i)
    return None


_SPLIT_FILES = {
    "Caltech101": "split_zhou_Caltech101.json", "OxfordPets": "split_zhou_OxfordPets.json",
    "StanfordCars": "split_zhou_StanfordCars.json", "OxfordFlowers": "split_zhou_OxfordFlowers.json",
    "Food101": "split_zhou_Food101.json", "SUN397": "split_zhou_SUN397.json",
    "DescribableTextures": "split_zhou_DescribableTextures.json",
    "EuroSAT": "split_zhou_EuroSAT.json", "UCF101": "split_zhou_UCF101.json",
}
_WRITERS = {
    "Caltech101": _write_caltech, "OxfordPets": _write_pets, "StanfordCars": _write_cars,
    "OxfordFlowers": _write_flowers, "Food101": _write_food, "FGVCAircraft": _write_aircraft,
    "SUN397": _write_sun, "DescribableTextures": _write_dtd, "EuroSAT": _write_eurosat,
    "UCF101": _write_ucf, "ImageNet": _write_imagenet, "ImageNetV2": _write_imagenet_v2,
    "ImageNetSketch": _write_imagenet_sketch,
}


def split_file_name(name):
    """The split_zhou_*.json file name of a dataset (None for datasets without one)."""
    return _SPLIT_FILES.get(name)


def write_fixture(root, name, n_classes=None, per_class=DEFAULT_PER_CLASS, with_split=True,
                  imagenet_classes=None):
    """Write the miniature dataset `name` under `root` and return its dataset folder."""
    if name not in _DATASETS:
        raise ValueError(f"unknown fixture dataset {name!r}; choose from {DATASET_NAMES}")
    split_sizes(per_class)  # validates per_class
    folder = _DATASETS[name][0]
    d = os.path.join(str(root), folder)
    if os.path.exists(d):
        raise FileExistsError(f"{d} already exists; write each fixture into a fresh root")
    os.makedirs(d)
    if name in ("ImageNetA", "ImageNetR"):
        n = _DATASETS[name][2] if n_classes is None else n_classes
        universe = 2 * n if imagenet_classes is None else imagenet_classes
        image_folder = "imagenet-a" if name == "ImageNetA" else "imagenet-r"
        _write_imagenet_subset(d, image_folder, n, universe, per_class)
        return d
    split = _WRITERS[name](d, _classes(name, n_classes), per_class)
    if with_split and name in _SPLIT_FILES:
        _write_json(os.path.join(d, _SPLIT_FILES[name]), split)
    return d


def imagenet_subset_classnames(name, n_classes=None, imagenet_classes=None):
    """(class names in A/R label order, their ImageNet labels) for an A/R fixture."""
    n = _DATASETS[name][2] if n_classes is None else n_classes
    universe = 2 * n if imagenet_classes is None else imagenet_classes
    everything = _classes("ImageNet", universe)
    idx = _subset_indices(n, universe)
    return [everything[i][1] for i in idx], idx



def dataset_cfg(root, name, num_shots=-1, seed=1, subsample="all"):
    """A default config (with the project's extra keys) pointing at a fixture root."""
    from dassl.config import get_cfg_default
    from trainers.config import extend_cfg

    cfg = extend_cfg(get_cfg_default())
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    cfg.INPUT.SIZE = (IMAGE_SIZE, IMAGE_SIZE)
    return cfg
