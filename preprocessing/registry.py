"""The registries of modalities and head types: filled by registration, found by discovery.

A modality module calls `MODALITIES.register(instance)`, a head-type module
`HEAD_TYPES.register(instance)`. On first use, each registry imports every module of its
package (`preprocessing.modalities`, `preprocessing.heads`), so adding a module is enough; a
test or a plug-in can also register its own from anywhere (and `unregister` it).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping, Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind = kind  # "modality", "head type"
        self.package = package
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, item: T) -> T:
        name = item.name
        if name in self._items and type(self._items[name]) is not type(item):
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            importlib.import_module(f"{self.package}.{info.name}")

    def __getitem__(self, name: str) -> T:
        self._discover()
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        """Names in sorted order, whatever order the modules registered in."""
        self._discover()
        return iter(sorted(self._items))

    def __len__(self) -> int:
        self._discover()
        return len(self._items)


MODALITIES: Registry = Registry("modality", "preprocessing.modalities")
HEAD_TYPES: Registry = Registry("head type", "preprocessing.heads")
