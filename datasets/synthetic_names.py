"""Real class names of the 15 benchmarks, for the synthetic dataset generator.

Each table lists ``(raw name as it appears in the dataset's files, final class name)`` in label
order: the first few real classes of each dataset, chosen to exercise every naming rule
(Caltech's capitalised and renamed folders, Pets' casing, Cars' model year, FGVC names with
spaces, SUN's sub-categories, UCF's CamelCase, EuroSAT's descriptive names). The final names
are written here by hand — not derived with the readers' rules — so tests comparing a reader's
output with them check those rules independently.

When more classes are requested than a table holds, :func:`class_table` appends synthetic
classes whose names sort after the real ones and need no renaming.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

__all__ = ["TABLES", "IMAGENET", "class_table", "imagenet_table"]

Table = List[Tuple[str, str]]

IMAGENET: Table = [
    ("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"), ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"), ("n01498041", "stingray"), ("n01514668", "rooster"),
    ("n01514859", "hen"), ("n01518878", "ostrich"),
]

TABLES: Dict[str, Table] = {
    "ImageNet": IMAGENET,
    # Sorted case-sensitively: capitalised folders first; four are renamed.
    "Caltech101": [
        ("Faces", "face"), ("Leopards", "leopard"), ("Motorbikes", "motorbike"),
        ("accordion", "accordion"), ("airplanes", "airplane"), ("anchor", "anchor"),
        ("ant", "ant"), ("barrel", "barrel"), ("bass", "bass"), ("beaver", "beaver"),
    ],
    # Image-name prefix (cats capitalised) -> lower-cased breed; class id = label + 1.
    "OxfordPets": [
        ("Abyssinian", "abyssinian"), ("american_bulldog", "american_bulldog"),
        ("american_pit_bull_terrier", "american_pit_bull_terrier"),
        ("basset_hound", "basset_hound"), ("beagle", "beagle"), ("Bengal", "bengal"),
        ("Birman", "birman"), ("Bombay", "bombay"), ("boxer", "boxer"),
        ("British_Shorthair", "british_shorthair"),
    ],
    # cars_meta.mat name -> year moved to the front.
    "StanfordCars": [
        ("AM General Hummer SUV 2000", "2000 AM General Hummer SUV"),
        ("Acura RL Sedan 2012", "2012 Acura RL Sedan"),
        ("Acura TL Sedan 2012", "2012 Acura TL Sedan"),
        ("Acura TL Type-S 2008", "2008 Acura TL Type-S"),
        ("Acura TSX Sedan 2012", "2012 Acura TSX Sedan"),
        ("Acura Integra Type R 2001", "2001 Acura Integra Type R"),
        ("Acura ZDX Hatchback 2012", "2012 Acura ZDX Hatchback"),
        ("Aston Martin V8 Vantage Convertible 2012", "2012 Aston Martin V8 Vantage Convertible"),
        ("Aston Martin V8 Vantage Coupe 2012", "2012 Aston Martin V8 Vantage Coupe"),
        ("Aston Martin Virage Convertible 2012", "2012 Aston Martin Virage Convertible"),
    ],
    # cat_to_name.json key (1-based category id) -> name.
    "OxfordFlowers": [
        ("1", "pink primrose"), ("2", "hard-leaved pocket orchid"), ("3", "canterbury bells"),
        ("4", "sweet pea"), ("5", "english marigold"), ("6", "tiger lily"),
        ("7", "moon orchid"), ("8", "bird of paradise"), ("9", "monkshood"),
        ("10", "globe thistle"),
    ],
    "Food101": [(n, n) for n in (
        "apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare",
        "beet_salad", "beignets", "bibimbap", "bread_pudding", "breakfast_burrito")],
    # variants.txt lines (label = line index); some contain spaces or slashes.
    "FGVCAircraft": [(n, n) for n in (
        "707-320", "727-200", "737-200", "A300B4", "BAE 146-200", "Cessna 172", "DC-10",
        "F-16A/B", "Gulfstream IV", "Tu-154")],
    # ClassName.txt lines -> parts after the letter, reversed.
    "SUN397": [
        ("/a/abbey", "abbey"), ("/a/airplane_cabin", "airplane_cabin"),
        ("/a/apartment_building/outdoor", "outdoor apartment_building"),
        ("/a/apse/indoor", "indoor apse"), ("/b/bakery/shop", "shop bakery"),
        ("/b/ballroom", "ballroom"), ("/b/bamboo_forest", "bamboo_forest"),
        ("/b/bar", "bar"), ("/b/barn", "barn"), ("/b/basement", "basement"),
    ],
    "DescribableTextures": [(n, n) for n in (
        "banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed",
        "cracked", "crosshatched", "crystalline")],
    "EuroSAT": [
        ("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"),
        ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
        ("Highway", "Highway or Road"), ("Industrial", "Industrial Buildings"),
        ("Pasture", "Pasture Land"), ("PermanentCrop", "Permanent Crop Land"),
        ("Residential", "Residential Buildings"), ("River", "River"), ("SeaLake", "Sea or Lake"),
    ],
    # classInd.txt action -> midframes folder; YoYo comes early here to exercise its rule.
    "UCF101": [
        ("ApplyEyeMakeup", "Apply_Eye_Makeup"), ("ApplyLipstick", "Apply_Lipstick"),
        ("Archery", "Archery"), ("BabyCrawling", "Baby_Crawling"), ("YoYo", "Yo_Yo"),
        ("BalanceBeam", "Balance_Beam"), ("BandMarching", "Band_Marching"),
        ("BaseballPitch", "Baseball_Pitch"), ("Basketball", "Basketball"),
        ("BasketballDunk", "Basketball_Dunk"),
    ],
}


def _extra(dataset: str, i: int) -> Tuple[str, str]:
    """The i-th synthetic class (0-based) beyond a table: sorts last, needs no renaming."""
    tag = f"{i:04d}"
    if dataset == "OxfordFlowers":
        return str(len(TABLES[dataset]) + i + 1), f"synthetic flower {tag}"
    if dataset == "StanfordCars":
        return f"Zz Synthetic Car {tag} 2024", f"2024 Zz Synthetic Car {tag}"
    if dataset == "SUN397":
        return f"/z/zz_synthetic_{tag}", f"zz_synthetic_{tag}"
    if dataset == "UCF101":
        return f"Zz{_letters(i)}", f"Zz{_letters(i)}"
    return f"zz_synthetic_{tag}", f"zz_synthetic_{tag}"


def _letters(i: int) -> str:
    """0 -> 'aaaa', 1 -> 'aaab', ... (lower-case, so CamelCase splitting keeps it whole)."""
    out = ""
    for _ in range(4):
        i, r = divmod(i, 26)
        out = chr(ord("a") + r) + out
    return out


def class_table(dataset: str, num_classes: int) -> Table:
    """``(raw, final)`` names of the first ``num_classes`` classes of ``dataset`` (label order)."""
    table = list(TABLES[dataset][:num_classes])
    table += [_extra(dataset, i) for i in range(num_classes - len(table))]
    return table


def imagenet_table(num_classes: int) -> Table:
    """``(wnid, name)`` in sorted-wnid order; synthetic wnids ``n99xxxxxx`` follow the real ones."""
    table = list(IMAGENET[:num_classes])
    start = len(table)
    table += [(f"n99{i:06d}", f"synthetic object {i:04d}") for i in range(start, num_classes)]
    return table
