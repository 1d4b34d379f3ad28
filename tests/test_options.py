from dataclasses import dataclass

import pytest

from ddbench.settings.budget import BudgetError, resolve_budget
from ddbench.settings.options import OptionError, apply_overrides, options_from_dict


@dataclass(frozen=True)
class Opts:
    steps: int = 10
    lr: float = 0.1
    name: str = "a"
    flag: bool = False
    layers: tuple[int, ...] = (1, 2)
    limit: int | None = None


def test_overrides_are_typed():
    opts = apply_overrides(Opts(), ["steps=5", "lr=0.5", "name=b", "flag=true", "layers=3,4", "limit=none"], "t")
    assert opts == Opts(5, 0.5, "b", True, (3, 4), None)
    assert apply_overrides(Opts(), ["limit=7"], "t").limit == 7


def test_unknown_key_lists_valid_ones():
    with pytest.raises(OptionError, match="no option 'stepz'.*steps, lr, name, flag, layers, limit"):
        apply_overrides(Opts(), ["stepz=3"], "method 'x'")


def test_bad_values_are_named():
    with pytest.raises(OptionError, match=r"steps takes an integer \(e.g. 4\), got 'many'"):
        apply_overrides(Opts(), ["steps=many"], "t")
    with pytest.raises(OptionError, match=r"lr takes a number \(e.g. 0.1\), got 'fast'"):
        apply_overrides(Opts(), ["lr=fast"], "t")
    with pytest.raises(OptionError, match=r"layers takes an integer \(e.g. 4\), got 'x'"):  # each element
        apply_overrides(Opts(), ["layers=3,x"], "t")
    with pytest.raises(OptionError, match="flag takes true or false"):
        apply_overrides(Opts(), ["flag=maybe"], "t")
    with pytest.raises(OptionError, match="KEY=VALUE"):
        apply_overrides(Opts(), ["steps"], "t")


def test_options_from_dict_refuses_unknown_keys():
    assert options_from_dict(Opts, {"layers": [5]}, "t").layers == (5,)
    with pytest.raises(OptionError, match="'bogus'"):
        options_from_dict(Opts, {"bogus": 1}, "t")


def test_budget_presets_and_overrides():
    paper = resolve_budget("paper")
    assert (paper.epochs, paper.optimizer, paper.lr, paper.weight_decay, paper.scheduler) == (1000, "adamw", 1e-3, 1e-4, "multistep")
    assert resolve_budget("paper-imagenet").epochs == 300
    changed = resolve_budget("quick", ["epochs=7"])
    assert changed.epochs == 7 and changed.preset == "quick*"
    # the preset's notes describe its own values ("300 steps at 100 images"): changed ones are named
    assert changed.notes.startswith(resolve_budget("quick").notes)
    assert "Changed from the preset 'quick': epochs 150 -> 7." in changed.notes
    # few epochs move the milestones (0.5 and 0.75 of 7: 3.5 and 5.25): the notes say where the lr drops
    assert changed.notes.endswith("The lr drops after epochs 4, 5 of 7: milestones 0.5, 0.75 rounded to whole epochs.")
    assert changed.milestone_epochs() == [4, 5]
    assert resolve_budget("quick", ["epochs=3"]).notes.endswith("The lr drops after epoch 2 of 3: milestones 0.5, "
                                                                "0.75 rounded to whole epochs.")
    assert resolve_budget("quick", ["epochs=4"]).notes.endswith("epochs 150 -> 4.")  # drops after epochs 2 and 3, as asked
    assert resolve_budget("quick", ["epochs=3", "scheduler=cosine"]).milestone_note() == ""
    assert resolve_budget("quick").milestone_epochs() == [75, 112]  # 112.5 to 112: within 1 % of the training, no note
    assert resolve_budget("quick", ["epochs=150"]).notes == resolve_budget("quick").notes
    with pytest.raises(BudgetError, match="available: paper"):
        resolve_budget("slow")
    with pytest.raises(BudgetError, match="valid options"):
        resolve_budget("quick", ["preset=mine"])
