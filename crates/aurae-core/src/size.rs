//! Sizes as people type and read them: `1.5G` in, `1.5 GiB` out. Multiples are binary
//! (1K = 1024 bytes) both ways, whatever the suffix says (`G`, `GB` and `GiB` are the
//! same), because quotas and usage are counted in the units a filesystem uses.

/// Binary multiples by suffix letter, smallest first.
const UNITS: [(char, u32); 4] = [('K', 10), ('M', 20), ('G', 30), ('T', 40)];

/// Most fraction digits taken: finer than a byte of a terabyte.
const MAX_FRACTION_DIGITS: usize = 12;

fn refusal(text: &str, why: &str) -> String {
    format!(
        "'{text}' is not a size: {why}; use bytes or a number with K, M, G or T (1K = 1024 bytes), e.g. 4096, 512M, 1.5G"
    )
}

/// Parses `4096`, `100K`, `512M`, `1.5G`, `0.5T` (optionally `KB`/`KiB`, any case, a space
/// before the suffix) into bytes; a fraction of a byte is rounded down.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(split);
    let shift = unit_shift(suffix.trim_start())
        .ok_or_else(|| refusal(text, &format!("'{}' is not a unit", suffix.trim_start())))?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(refusal(text, "it has no number"));
    }
    if fraction.contains('.') || fraction.len() > MAX_FRACTION_DIGITS {
        return Err(refusal(text, "the number is not a decimal such as 1.5"));
    }
    let too_large = || refusal(text, "it is larger than 16 EiB");
    let whole: u128 = match whole {
        "" => 0,
        digits => digits.parse().map_err(|_| too_large())?,
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = match fraction {
        "" => 0,
        digits => digits.parse().map_err(|_| too_large())?,
    };
    let bytes = whole
        .checked_mul(1 << shift)
        .and_then(|b| b.checked_add((fraction << shift) / scale))
        .ok_or_else(too_large)?;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// The shift of a suffix: `""` or `B` is bytes, `K`, `KB`, `KiB` (any case) is 10, ...
fn unit_shift(suffix: &str) -> Option<u32> {
    let upper = suffix.to_ascii_uppercase();
    let letter = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    match letter {
        "" if !upper.ends_with("IB") => Some(0),
        _ => UNITS
            .iter()
            .find(|(unit, _)| letter.len() == 1 && letter.starts_with(*unit))
            .map(|(_, shift)| *shift),
    }
}

/// Bytes for a person: `512 B`, `1.5 GiB`; one decimal above a KiB.
pub fn human(bytes: u64) -> String {
    let Some((unit, shift)) = UNITS.iter().rev().find(|(_, shift)| bytes >> shift > 0) else {
        return format!("{bytes} B");
    };
    format!("{:.1} {unit}iB", bytes as f64 / (1u64 << shift) as f64)
}

/// Bytes as the largest unit that holds them exactly (`512M`, `3G`), else plain bytes:
/// what a config file should say, since [`parse_size`] reads it back to the same number.
pub fn exact(bytes: u64) -> String {
    UNITS
        .iter()
        .rev()
        .find(|(_, shift)| bytes != 0 && bytes.trailing_zeros() >= *shift)
        .map(|(unit, shift)| format!("{}{unit}", bytes >> shift))
        .unwrap_or_else(|| bytes.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sizes_read_back_to_the_same_bytes() {
        for bytes in [
            0,
            1,
            1023,
            1024,
            1536,
            512 << 20,
            3 << 30,
            (1 << 40) + 1,
            u64::MAX,
        ] {
            assert_eq!(parse_size(&exact(bytes)), Ok(bytes), "{}", exact(bytes));
        }
        assert_eq!(exact(512 << 20), "512M");
        assert_eq!(exact(1536), "1536");
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("100K"), Ok(100 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("3 T"), Ok(3 << 40));
        assert_eq!(parse_size("10B"), Ok(10));
    }

    #[test]
    fn sizes_take_decimals() {
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0.5T"), Ok(1 << 39));
        assert_eq!(parse_size(".5K"), Ok(512));
        assert_eq!(parse_size("1.K"), Ok(1024));
        assert_eq!(parse_size("1.1K"), Ok(1126));
        assert_eq!(parse_size("2.5"), Ok(2));
    }

    #[test]
    fn garbage_is_refused_with_what_a_size_looks_like() {
        for bad in [
            "", "M", "12X", "1.2.3G", "-1G", "1e9", "G5", "1 GG", ".", "1iB", "1.5 gigs",
        ] {
            let error = parse_size(bad).expect_err(bad);
            assert!(error.contains("e.g. 4096, 512M, 1.5G"), "{bad}: {error}");
        }
        assert!(parse_size("16384P").is_err());
        assert!(parse_size("99999999999T").unwrap_err().contains("16 EiB"));
        assert_eq!(parse_size("16383.9T").map(|b| b > 0), Ok(true));
    }

    #[test]
    fn human_sizes_use_binary_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(5 << 40), "5.0 TiB");
    }
}
