import pytest

from ollama_gpu.planner.units import GIB, MIB, format_gb, format_ollama, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22.5GiB", 24_159_191_040),
        ("1GiB", 1_073_741_824),
        ("512MiB", 536_870_912),
        ("24GB", 24_000_000_000),
        ("24 gb", 24_000_000_000),
        ("1073741824", 1_073_741_824),
        ("457 MiB", 457 * MIB),
        ("0", 0),
    ],
)
def test_parse_size_reads_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1GiB", "1 GiBs", "1.5.2GB"])
def test_parse_size_rejects_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_parse_rate_accepts_per_second_suffixes_and_plain_numbers():
    assert parse_rate("600GB/s") == 600e9
    assert parse_rate("900 GB/s") == 900e9
    assert parse_rate("100e9") == 100e9
    with pytest.raises(ValueError):
        parse_rate("fast")
    with pytest.raises(ValueError):
        parse_rate("0GB/s")


@pytest.mark.parametrize(
    ("size", "printed"),
    [
        # The A10 field-notes log line values, as Ollama's format.HumanBytes2 prints them.
        (19_885_455_360, "18.5 GiB"),
        (12_592_506_880, "11.7 GiB"),
        (190 * MIB + MIB // 2, "190.5 MiB"),
        (84 * MIB, "84.0 MiB"),
        (GIB, "1.0 GiB"),
        (1536, "1.5 KiB"),
        (1023, "1023 B"),
        (0, "0 B"),
    ],
)
def test_format_ollama_matches_go_human_bytes2(size, printed):
    assert format_ollama(size) == printed


def test_format_gb_uses_decimal_gigabytes():
    assert format_gb(32_477_962_240) == "32.48 GB"
