"""Text payload codecs: how a caption becomes the bytes that are sent.

The textual-transform paper's rate is the caption's UTF-8 length (``utf8``).
General-purpose compressors can do better on longer captions; ``zstd`` with a
dictionary trained on a separate caption set does better still on short ones,
but the dictionary is *shared side information* that sender and receiver must
both hold: its size is reported with the method and is not part of the rate.

Every codec first normalises the caption to Unicode NFC, and every payload
decodes back to exactly that normalised caption.
"""

from __future__ import annotations

import hashlib
import unicodedata
import zlib
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar

from pydantic import Field, model_validator

from semcomp.errors import ConfigError
from semcomp.params import PluginParams, StudyPath, file_sha256

#: zstd frames are decoded with this output bound (captions are far smaller)
MAX_CAPTION_BYTES = 16 * 1024 * 1024


def normalise_caption(text: str) -> str:
    """The form every text codec sends: Unicode NFC (composed characters)."""
    return unicodedata.normalize("NFC", text)


class TextCodec(ABC):
    """caption (str) → payload (bytes) → the same caption."""

    name: ClassVar[str]
    Params: ClassVar[type[PluginParams]] = PluginParams

    def __init__(self, params: PluginParams):
        self.params = params

    @abstractmethod
    def encode(self, caption: str) -> bytes: ...

    @abstractmethod
    def decode(self, payload: bytes) -> str: ...

    def side_information(self) -> dict[str, Any]:
        """What the receiver must already hold (not counted in the rate)."""
        return {}


class Utf8Codec(TextCodec):
    """The paper's rate: NFC-normalised UTF-8 bytes, nothing else."""

    name = "utf8"

    def encode(self, caption: str) -> bytes:
        return normalise_caption(caption).encode("utf-8")

    def decode(self, payload: bytes) -> str:
        return payload.decode("utf-8")


class ZlibParams(PluginParams):
    level: int = Field(default=9, ge=0, le=9)
    #: raw DEFLATE, without zlib's 2-byte header and 4-byte checksum (which buy nothing here)
    raw: bool = True


class ZlibCodec(TextCodec):
    name = "zlib"
    Params = ZlibParams

    @property
    def _wbits(self) -> int:
        return -zlib.MAX_WBITS if self.params.raw else zlib.MAX_WBITS

    def encode(self, caption: str) -> bytes:
        compressor = zlib.compressobj(self.params.level, zlib.DEFLATED, self._wbits)
        data = normalise_caption(caption).encode("utf-8")
        return compressor.compress(data) + compressor.flush()

    def decode(self, payload: bytes) -> str:
        return zlib.decompress(payload, self._wbits).decode("utf-8")


class BrotliParams(PluginParams):
    quality: int = Field(default=11, ge=0, le=11)


class BrotliCodec(TextCodec):
    """Brotli in text mode (its built-in dictionary is part of the format)."""

    name = "brotli"
    Params = BrotliParams

    def encode(self, caption: str) -> bytes:
        import brotli

        data = normalise_caption(caption).encode("utf-8")
        return brotli.compress(data, mode=brotli.MODE_TEXT, quality=self.params.quality)

    def decode(self, payload: bytes) -> str:
        import brotli

        return brotli.decompress(payload).decode("utf-8")


class ZstdParams(PluginParams):
    level: int = Field(default=19, ge=1, le=22)
    #: a text file with one caption per line, *separate* from the study's captions, to
    #: train a shared dictionary on (omit for plain zstd)
    dictionary_captions: StudyPath | None = None
    dictionary_size: int = Field(default=1024, ge=256, le=1 << 20)
    #: filled in from the file: the dictionary is part of the method's identity
    dictionary_captions_sha256: str | None = None

    #: the file's content (its hash) is the identity, not where it lies
    operational: ClassVar[frozenset[str]] = frozenset({"dictionary_captions"})

    @model_validator(mode="after")
    def _hash_dictionary_source(self) -> ZstdParams:
        if self.dictionary_captions is None:
            return self
        digest = file_sha256(self.dictionary_captions, "dictionary_captions")
        if self.dictionary_captions_sha256 not in (None, digest):
            raise ValueError("dictionary_captions changed since dictionary_captions_sha256 was set")
        object.__setattr__(self, "dictionary_captions_sha256", digest)
        return self


class ZstdCodec(TextCodec):
    """zstd frames without checksum, content size or dictionary id (the receiver knows them)."""

    name = "zstd"
    Params = ZstdParams

    @cached_property
    def dictionary(self) -> Any:
        import zstandard

        params: ZstdParams = self.params  # type: ignore[assignment]
        if params.dictionary_captions is None:
            return None
        lines = params.dictionary_captions.read_text(encoding="utf-8").splitlines()
        samples = [normalise_caption(line).encode("utf-8") for line in lines if line.strip()]
        try:
            return zstandard.train_dictionary(params.dictionary_size, samples)
        except zstandard.ZstdError as exc:
            raise ConfigError(
                f"cannot train a {params.dictionary_size}-byte zstd dictionary from "
                f"{len(samples)} captions in {params.dictionary_captions} ({exc}); "
                "give more captions or a smaller dictionary_size"
            ) from None

    def encode(self, caption: str) -> bytes:
        import zstandard

        compressor = zstandard.ZstdCompressor(
            level=self.params.level,
            dict_data=self.dictionary,
            write_checksum=False,
            write_content_size=False,
            write_dict_id=False,
        )
        return compressor.compress(normalise_caption(caption).encode("utf-8"))

    def decode(self, payload: bytes) -> str:
        import zstandard

        decompressor = zstandard.ZstdDecompressor(dict_data=self.dictionary)
        return decompressor.decompress(payload, max_output_size=MAX_CAPTION_BYTES).decode("utf-8")

    def side_information(self) -> dict[str, Any]:
        if self.dictionary is None:
            return {}
        data = self.dictionary.as_bytes()
        return {
            "dictionary_bytes": len(data),
            "dictionary_sha256": hashlib.sha256(data).hexdigest(),
            "note": "shared zstd dictionary: side information, not counted in the rate",
        }
