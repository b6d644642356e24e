"""UCF101 (middle frames): ``ucf101/UCF-101-midframes/<Action_Name>/v_<Action>_gXX_cYY.jpg``."""
from __future__ import annotations

import os
import re
from typing import Dict, List

from disakit.bundle import bundled_dataset
from disakit.dassl_api import Datum

from .base import CoOpDataset
from .common import Split, label_of, make_datum, read_text_lines, split_trainval


def action_name(action: str) -> str:
    """``ApplyEyeMakeup`` → ``Apply_Eye_Makeup``, ``YoYo`` → ``Yo_Yo`` (cut before capitals)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@bundled_dataset
class UCF101(CoOpDataset):
    """101 actions, one middle frame per video; label = ``classInd.txt`` id − 1.

    Without the split JSON: ``trainlist01``/``testlist01``, then an 80/20 train/val split.
    """

    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"

    def build_split(self) -> Split:
        cname2lab = {}
        for line in read_text_lines(self.raw_file("ucfTrainTestlist", "classInd.txt")):
            label, classname = line.split(" ")
            cname2lab[classname] = int(label) - 1
        trainval = self.read_data(cname2lab, "trainlist01.txt")
        test = self.read_data(cname2lab, "testlist01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab: Dict[str, int], text_file: str) -> List[Datum]:
        """Items of one list file (lines ``Action/v_Action_g08_c01.avi [label]``)."""
        path = self.raw_file("ucfTrainTestlist", text_file)
        items = []
        for line in read_text_lines(path):
            action, filename = line.split(" ")[0].split("/")
            renamed = action_name(action)
            impath = os.path.join(self.image_dir, renamed, filename.replace(".avi", ".jpg"))
            items.append(make_datum(impath, label_of(cname2lab, action, path), 0, renamed))
        return items
