"""Pieces shared by the stored specs and configs: later fields left out at their defaults, encoded inputs.

Specs and configs are stored (and digested) as JSON. A field added after the first ones were stored is
left out of a dump while it holds its default, so the bytes of everything that does not use it stay
what they were: :func:`drop_defaults` does that for a model's wrap serializer. :class:`EncodedInput`
gives a network spec (actor-critic or Q-network) its optional one-hot observation encoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

if TYPE_CHECKING:
    from ftg_common.envs.encoding import ObservationEncoding

__all__ = ["EncodedInput", "drop_defaults", "obs_encoding_field"]


def drop_defaults(data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``data`` without each key of ``defaults`` whose value equals its default there (in place)."""
    for name, default in defaults.items():
        if name in data and data[name] == default:
            del data[name]
    return data


def obs_encoding_field() -> Any:
    """The ``obs_encoding`` field of a network spec: None, or an ObservationEncoding's JSON."""
    return Field(
        default=None,
        description="ObservationEncoding JSON when raw observations are one-hot encoded (None: as they are)",
    )


class EncodedInput(BaseModel):
    """Base of a network spec whose input may be one-hot encoded raw observations (no fields of its own).

    The spec declares ``obs_dim`` (the network's input width), ``net_arch`` and ``obs_encoding`` (see
    :func:`obs_encoding_field`). Its dumps leave out each field of ``OMIT_WHEN_DEFAULT`` while at that
    default (fields added after the first specs were stored), so old policy files keep their bytes.
    """

    OMIT_WHEN_DEFAULT: ClassVar[dict[str, Any]] = {"obs_encoding": None}

    if TYPE_CHECKING:
        obs_dim: int
        net_arch: list[int]
        obs_encoding: str | None

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return drop_defaults(handler(self), self.OMIT_WHEN_DEFAULT)

    @model_validator(mode="after")
    def _input_widths(self) -> EncodedInput:
        if any(h <= 0 for h in self.net_arch):
            raise ValueError(f"net_arch widths must be positive, got {self.net_arch}")
        enc = self.encoding
        if enc is not None and enc.dim != self.obs_dim:
            raise ValueError(f"obs_encoding is {enc.dim} wide, but obs_dim is {self.obs_dim}")
        return self

    @property
    def encoding(self) -> ObservationEncoding | None:
        """How raw observation vectors become the network's input; None when they are used as they are."""
        if self.obs_encoding is None:
            return None
        from ftg_common.envs.encoding import ObservationEncoding

        return ObservationEncoding.from_json(self.obs_encoding)

    @property
    def raw_obs_dim(self) -> int:
        """Width of a raw observation vector as a trajectory or the replay buffer stores it.

        ``obs_dim`` unless the observations are one-hot encoded.
        """
        enc = self.encoding
        return self.obs_dim if enc is None else enc.raw_dim
