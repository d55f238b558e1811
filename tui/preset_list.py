"""Preset list: every preset with its description; the active one marked."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from .text import shown


class PresetList(OptionList):
    def __init__(self, presets: dict, active: str, **kwargs):
        self.names = list(presets)
        self.presets = presets
        self.active = active
        super().__init__(*[Option(self._prompt(i, name, name == active), id=name)
                           for i, name in enumerate(self.names)], **kwargs)
        self.border_title = "presets (1-9 or enter)"

    def _prompt(self, index, name, active):
        key = str(index + 1) if index < 9 else " "
        return Text.assemble(("> " if active else "  ", "bold green"), (f"{key} ", "dim"),
                             (shown(name), "bold green" if active else "bold"), "\n",
                             (shown(self.presets[name].description), "dim"))

    def on_mount(self) -> None:
        self.highlighted = self.names.index(self.active) if self.active in self.names else None

    def on_show(self) -> None:
        """Shown (at start, or when the terminal grew wide enough): take the focus if no one has it, so
        enter works without tab first."""
        if self.screen.focused is None:
            self.focus()

    def mark_active(self, active: str) -> None:
        """Mark `active` and move the cursor to it."""
        self.active = active
        for i, name in enumerate(self.names):
            self.replace_option_prompt_at_index(i, self._prompt(i, name, name == active))
        self.highlighted = self.names.index(active)
