"""Table-driven device properties that coerce the strings a ``.cfg`` sends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymmcore_plus.experimental.unicore import Device

__all__ = ["Setting", "register_settings"]


@dataclass(frozen=True)
class Setting:
    """One property: its name, type, default and limits or allowed values."""

    name: str
    kind: type
    default: Any
    limits: tuple[float, float] | None = None
    allowed: Sequence[Any] | None = None
    doc: str = ""

    def coerce(self, device_label: str, value: Any) -> Any:
        """Turn a (possibly string) value into ``kind``, with a clear error."""
        try:
            if self.kind is bool:
                text = str(value).strip().lower()
                if text not in {"0", "1", "true", "false", "yes", "no", "on", "off"}:
                    raise ValueError(text)
                converted: Any = text in {"1", "true", "yes", "on"}
            elif self.kind is int:
                number = float(value)
                if not number.is_integer():
                    raise ValueError(value)
                converted = int(number)
            else:
                converted = self.kind(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{device_label}.{self.name}: {value!r} is not a valid "
                f"{self.kind.__name__}; {self.doc or 'see the device docs'}"
            ) from None
        if self.limits is not None and not self.limits[0] <= converted <= self.limits[1]:
            raise ValueError(
                f"{device_label}.{self.name}: {converted} is outside the allowed "
                f"range [{self.limits[0]}, {self.limits[1]}]"
            )
        if self.allowed is not None and converted not in self.allowed:
            raise ValueError(
                f"{device_label}.{self.name}: {converted!r} is not one of {list(self.allowed)}"
            )
        return converted


def register_settings(
    device: Device,
    settings: Sequence[Setting],
    store: dict[str, Any],
    on_change: Callable[[str], None] | None = None,
) -> None:
    """Register ``settings`` on ``device``, keeping values in ``store``.

    Limits and allowed values are checked here rather than by Micro-Manager's
    property machinery so that the error names the device, the property and
    the fix, and so that a ``.cfg``'s strings are coerced first.
    """
    for setting in settings:
        store[setting.name] = setting.default

        def getter(dev: Device, name: str = setting.name) -> Any:
            return store[name]

        def setter(dev: Device, value: Any, s: Setting = setting) -> None:
            previous = store[s.name]
            store[s.name] = s.coerce(dev.get_label() or type(dev).__name__, value)
            if on_change is not None:
                try:
                    on_change(s.name)
                except Exception:
                    store[s.name] = previous  # a refused value leaves no trace
                    raise

        device.register_property(
            setting.name,
            default_value=setting.default,
            getter=getter,
            setter=setter,
            allowed_values=setting.allowed if setting.kind is str else None,
            property_type=_PROPERTY_TYPES.get(setting.kind, str),
        )


_PROPERTY_TYPES: dict[type, type] = {float: float, int: int, bool: int, str: str}
