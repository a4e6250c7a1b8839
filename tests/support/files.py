"""Files to attach, built on the spot (never committed): photos with metadata, hand-made ICC profiles and PNG
bombs, PDFs of text, of blank pages and of hostile content streams. The tests and bench/attachments.py use them."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

from PIL import ExifTags, Image, ImageChops
from PIL.PngImagePlugin import PngInfo
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

__all__ = [
    "FONT",
    "GPS_LATITUDE",
    "SECRETS",
    "SERIAL",
    "blank_pdf",
    "gps_exif",
    "heavy_pdf",
    "icc_profile",
    "iptc_segment",
    "noisy",
    "photo",
    "png_bomb",
    "png_with_text",
    "raw_pdf",
    "stream",
    "text_pdf",
    "with_segment",
]

SERIAL = "SN-4417-SECRET"
GPS_LATITUDE = (48.0, 51.0, 29.5)
# Byte strings that must never leave the app: every one is put into some test file's metadata.
SECRETS = (
    SERIAL.encode(),
    b"secret-xmp-creator",
    b"secret-jpeg-comment",
    b"secret-iptc-byline",
    b"secret-png-text",
    b"Exif",
    b"ICC_PROFILE",
    b"http://ns.adobe.com/xap/1.0/",
    b"Photoshop 3.0",
)
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>secret-xmp-creator</dc:creator>'
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def gps_exif(*, orientation: int | None = None) -> Image.Exif:
    """EXIF as a phone writes it: maker, body serial number, and a GPS position; an orientation when asked."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 12"
    exif[ExifTags.Base.BodySerialNumber] = SERIAL
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: GPS_LATITUDE,
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (2.0, 17.0, 40.2),
    }
    return exif


def photo(
    width: int,
    height: int,
    *,
    noise: float = 12.0,
    quality: int = 90,
    exif: Image.Exif | None = None,
    icc: bytes | None = None,
    metadata: bool = False,
    seed_colour: tuple[int, int, int] = (30, 120, 220),
) -> bytes:
    """A JPEG that compresses like a photo: colour gradients under per-channel noise. With `metadata`, it also
    carries XMP, a comment and an IPTC block (`SECRETS`)."""
    image = noisy(width, height, noise=noise, seed_colour=seed_colour)
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": quality}
    if exif is not None:
        options["exif"] = exif.tobytes()
    if icc is not None:
        options["icc_profile"] = icc
    if metadata:
        options["xmp"] = XMP
        options["comment"] = b"secret-jpeg-comment"
    image.save(buffer, "JPEG", **options)
    data = buffer.getvalue()
    return with_segment(data, iptc_segment()) if metadata else data


def noisy(
    width: int, height: int, *, noise: float = 12.0, seed_colour: tuple[int, int, int] = (30, 120, 220)
) -> Image.Image:
    """Gradients in each channel under Gaussian noise (a tile of at most 1024 px, repeated: a JPEG does not see
    the period, and making the noise is most of the cost)."""
    gradient = Image.linear_gradient("L")
    across = gradient.rotate(90).resize((width, height))
    down = gradient.resize((width, height))
    channels = []
    for base, shade, weight in zip(seed_colour, (across, down, across), (0.5, 0.5, 0.3), strict=True):
        mixed = Image.blend(Image.new("L", (width, height), base), shade, weight)
        if noise:
            tile = Image.effect_noise((min(width, 1024), min(height, 1024)), noise)
            grain = Image.new("L", (width, height))
            for left in range(0, width, tile.width):
                for top in range(0, height, tile.height):
                    grain.paste(tile, (left, top))
            mixed = ImageChops.add(mixed, grain, offset=-128)
        channels.append(mixed)
    return Image.merge("RGB", channels)


def iptc_segment() -> bytes:
    """A JPEG APP13 segment with an IPTC by-line, as Photoshop writes it."""
    record = b"\x1c\x02\x50" + struct.pack(">H", 18) + b"secret-iptc-byline"
    block = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(record)) + record
    body = b"Photoshop 3.0\x00" + block
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def with_segment(jpeg: bytes, segment: bytes) -> bytes:
    """The JPEG with a marker segment inserted right after its start-of-image marker."""
    return jpeg[:2] + segment + jpeg[2:]


def png_with_text(image: Image.Image, *, exif: Image.Exif | None = None, icc: bytes | None = None) -> bytes:
    info = PngInfo()
    info.add_text("Comment", "secret-png-text")
    info.add_itxt("Description", "secret-png-text", zip=True)
    buffer = io.BytesIO()
    options: dict[str, object] = {"pnginfo": info}
    if exif is not None:
        options["exif"] = exif.tobytes()
    if icc is not None:
        options["icc_profile"] = icc
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` greyscale pixels, holding a few compressed bytes of them."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 65_536, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def icc_profile(*, swap_red_green: bool = False, description: str = "Test RGB") -> bytes:
    """A minimal ICC v2 RGB display profile: sRGB's primaries (adapted to D50) and a 2.2 gamma. With
    `swap_red_green`, its red is sRGB's green and the other way round, so that a conversion shows plainly."""
    red, green, blue = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)
    if swap_red_green:
        red, green = green, red

    def xyz(values: Sequence[float]) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + b"".join(struct.pack(">i", round(value * 65536)) for value in values)

    text = description.encode("ascii")
    tags = [
        (b"desc", b"desc\x00\x00\x00\x00" + struct.pack(">I", len(text) + 1) + text + b"\x00" + b"\x00" * 79),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, 0x0233) + b"\x00\x00"),
        (b"cprt", b"text\x00\x00\x00\x00" + b"none\x00\x00\x00\x00"),
    ]
    tags += [(b"gTRC", tags[5][1]), (b"bTRC", tags[5][1])]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, data = [struct.pack(">I", len(tags))], b""
    for signature, body in tags:
        table.append(signature + struct.pack(">II", offset + len(data), len(body)))
        data += body + b"\x00" * (-len(body) % 4)
    size = 128 + table_size + len(data)
    header = struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
    header += b"\x00" * 12 + b"acsp" + b"\x00" * 24
    header += struct.pack(">iii", 63190, 65536, 54061)  # the D50 illuminant
    header += b"\x00" * (128 - len(header))
    return header + b"".join(table) + data


def _pdf(streams: Sequence[bytes], *, shared: bool = False) -> bytes:
    """A PDF with one page per content stream (or, `shared`, every page drawing the first one), in Helvetica."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    first = None
    for content in streams:
        page = writer.add_blank_page(612, 792)
        if shared and first is not None:
            page[NameObject("/Contents")] = first
        else:
            stream = DecodedStreamObject()
            stream.set_data(content)
            first = writer._add_object(stream.flate_encode())
            page[NameObject("/Contents")] = first
        page[NameObject("/Resources")] = resources
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def text_pdf(pages: Sequence[str]) -> bytes:
    """A PDF with the given text on its pages, one line of the page per line of the text."""

    def content(text: str) -> bytes:
        lines = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in text.split("\n")]
        shown = b" T*\n".join(f"({line}) Tj".encode("latin-1") for line in lines)
        return b"BT /F1 10 Tf 12 TL 72 740 Td\n" + shown + b"\nET"

    return _pdf([content(page) for page in pages])


def blank_pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def heavy_pdf(*, operators: int = 100_000, pages: int = 100) -> bytes:
    """A small PDF whose pages all draw one content stream of `operators` text operators: a few KB that keep
    pypdf busy for seconds a page."""
    stream = b"BT /F1 12 Tf (hello world) Tj ET\n" * operators
    return _pdf([stream] * pages, shared=True)


def raw_pdf(objects: Sequence[bytes]) -> bytes:
    """A PDF written by hand: object i + 1 is `objects[i]` (the first is the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(content: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
