//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2`, `1e3`): parsing, and the integer
//! amounts the kube-scheduler compares (milli-units of cpu, whole units of everything else).
//!
//! The grammar and rounding are apimachinery's `resource.Quantity`: a signed decimal number
//! followed by a binary suffix (`Ki` … `Ei`), a decimal suffix (`n u m k M G T P E`) or a
//! decimal exponent (`e3`, `E-2`); `MilliValue` and `Value` round up. A quantity is kept exact
//! (a decimal mantissa times a power of ten and a power of two), so `0.1Ki` is 102.4 and rounds
//! to 103, as Kubernetes has it.

use std::str::FromStr;

/// The message the API server gives for a malformed quantity.
pub const FORMAT_MESSAGE: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Significant digits kept in the mantissa; more are rounded away from zero (beyond any real
/// capacity or request, and it keeps every product inside `i128`).
const MAX_DIGITS: usize = 30;

/// A quantity that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{FORMAT_MESSAGE}")]
pub struct QuantityError;

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2`, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'+') => (false, &s[1..]),
            Some(b'-') => (true, &s[1..]),
            _ => (false, s),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.len() + fraction.len() == 0 || fraction.contains('.') {
            return Err(QuantityError);
        }
        let (exp10, exp2) = suffix_exponents(suffix).ok_or(QuantityError)?;
        let digits = whole
            .bytes()
            .chain(fraction.bytes())
            .skip_while(|d| *d == b'0');
        let mut mantissa: i128 = 0;
        let mut kept = 0usize;
        let mut dropped = 0i32;
        let mut inexact = false;
        for d in digits {
            if kept < MAX_DIGITS {
                mantissa = mantissa * 10 + i128::from(d - b'0');
                kept += 1;
            } else {
                dropped += 1;
                inexact |= d != b'0';
            }
        }
        if inexact {
            mantissa += 1;
        }
        let fraction_digits = i32::try_from(fraction.len()).map_err(|_| QuantityError)?;
        let exp10 = exp10
            .checked_sub(fraction_digits)
            .and_then(|e| e.checked_add(dropped))
            .ok_or(QuantityError)?;
        Ok(Self {
            mantissa: if negative { -mantissa } else { mantissa },
            exp10,
            exp2,
        })
    }
}

/// The powers of ten and two a suffix stands for; `None` when it is not a suffix.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    let decimal = |e: i32| Some((e, 0));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => Some((0, 10)),
        "Mi" => Some((0, 20)),
        "Gi" => Some((0, 30)),
        "Ti" => Some((0, 40)),
        "Pi" => Some((0, 50)),
        "Ei" => Some((0, 60)),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            decimal(exponent.parse().ok()?)
        }
    }
}

impl Quantity {
    /// Parses `s` (the same as `s.parse()`).
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        s.parse()
    }

    /// `⌈q × 10^scale⌉`, saturated to `i64`.
    fn ceil_scaled(&self, scale: i32) -> i64 {
        if self.mantissa == 0 {
            return 0;
        }
        let saturated = if self.mantissa > 0 {
            i64::MAX
        } else {
            i64::MIN
        };
        let Some(mut n) = self.mantissa.checked_mul(1i128 << self.exp2.min(100)) else {
            return saturated;
        };
        if self.exp2 > 100 {
            return saturated;
        }
        let exp = i64::from(self.exp10) + i64::from(scale);
        if exp >= 0 {
            for _ in 0..exp {
                match n.checked_mul(10) {
                    Some(m) if m.abs() <= i128::from(i64::MAX) * 10 => n = m,
                    _ => return saturated,
                }
            }
        } else {
            // Dividing by more than 10^39 leaves nothing of any i128.
            let divisor = if -exp > 38 {
                None
            } else {
                Some(10i128.pow((-exp) as u32))
            };
            n = match divisor {
                Some(d) => n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0),
                None => i128::from(n > 0),
            };
        }
        i64::try_from(n).unwrap_or(saturated)
    }

    /// The value in thousandths, rounded up (`MilliValue`): cpu `500m` → 500, `2` → 2000.
    pub fn milli_value(&self) -> i64 {
        self.ceil_scaled(3)
    }

    /// The value in whole units, rounded up (`Value`): memory `1Gi` → 1073741824.
    pub fn value(&self) -> i64 {
        self.ceil_scaled(0)
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }
}

/// The amount of `resource` the kube-scheduler compares: millicores for `cpu`, whole units
/// (bytes, pods, devices) for every other resource.
pub fn scheduling_amount(resource: &str, quantity: &Quantity) -> i64 {
    if resource == "cpu" {
        quantity.milli_value()
    } else {
        quantity.value()
    }
}

/// An amount of `resource` as `kubectl describe node` prints it: cpu in cores or `m`,
/// byte-sized resources with the largest binary suffix that divides them, others as integers.
pub fn format_amount(resource: &str, amount: i64) -> String {
    if resource == "cpu" {
        return if amount % 1000 == 0 {
            (amount / 1000).to_string()
        } else {
            format!("{amount}m")
        };
    }
    let bytes = resource == "memory"
        || resource == "ephemeral-storage"
        || resource.starts_with("hugepages-");
    if bytes && amount != 0 {
        for (shift, suffix) in [
            (60, "Ei"),
            (50, "Pi"),
            (40, "Ti"),
            (30, "Gi"),
            (20, "Mi"),
            (10, "Ki"),
        ] {
            if amount % (1i64 << shift) == 0 {
                return format!("{}{suffix}", amount >> shift);
            }
        }
    }
    amount.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn milli(s: &str) -> i64 {
        Quantity::parse(s).unwrap().milli_value()
    }

    fn value(s: &str) -> i64 {
        Quantity::parse(s).unwrap().value()
    }

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(milli("500m"), 500);
        assert_eq!(milli("2"), 2000);
        assert_eq!(milli("0.5"), 500);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli("100u"), 1, "rounded up");
        assert_eq!(milli("1e3"), 1_000_000);
        assert_eq!(milli("+3"), 3000);
        assert_eq!(milli("0"), 0);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("5."), 5000);
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(value("1Gi"), 1 << 30);
        assert_eq!(value("4Gi"), 4 << 30);
        assert_eq!(value("1.5Gi"), 1_610_612_736);
        assert_eq!(value("0.1Ki"), 103, "102.4 rounds up");
        assert_eq!(value("128974848"), 128_974_848);
        assert_eq!(value("129e6"), 129_000_000);
        assert_eq!(value("129M"), 129_000_000);
        assert_eq!(value("123Mi"), 128_974_848);
        assert_eq!(value("1k"), 1000);
        assert_eq!(value("1m"), 1, "a thousandth of a byte is one byte");
        assert_eq!(value("1E"), 1_000_000_000_000_000_000);
        assert_eq!(value("8Ei"), i64::MAX, "saturates");
    }

    #[test]
    fn negative_quantities_round_up_toward_zero() {
        assert_eq!(milli("-1"), -1000);
        assert_eq!(value("-1.5"), -1);
        assert!(Quantity::parse("-1").unwrap().is_negative());
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in [
            "", "m", "1.2.3", "1 Gi", "1gi", "1KiB", "abc", "1e", "1e+", "1.5x", "--1", "1Gi1",
        ] {
            let err = Quantity::parse(bad).expect_err(bad);
            assert_eq!(err.to_string(), FORMAT_MESSAGE, "{bad:?}");
        }
    }

    #[test]
    fn amounts_format_as_describe_prints_them() {
        assert_eq!(format_amount("cpu", 1400), "1400m");
        assert_eq!(format_amount("cpu", 2000), "2");
        assert_eq!(format_amount("memory", 2 << 30), "2Gi");
        assert_eq!(format_amount("memory", 1_000_000), "1000000");
        assert_eq!(format_amount("memory", 0), "0");
        assert_eq!(format_amount("nvidia.com/gpu", 2), "2");
        assert_eq!(
            scheduling_amount("cpu", &Quantity::parse("1").unwrap()),
            1000
        );
        assert_eq!(
            scheduling_amount("nvidia.com/gpu", &Quantity::parse("1").unwrap()),
            1
        );
    }

    proptest! {
        /// A whole number of millicores written as `Nm` and as a decimal agree.
        #[test]
        fn milli_and_decimal_forms_agree(n in 0i64..10_000_000) {
            let decimal = format!("{}.{:03}", n / 1000, n % 1000);
            prop_assert_eq!(milli(&format!("{n}m")), n);
            prop_assert_eq!(milli(&decimal), n);
            prop_assert_eq!(value(&decimal), (n + 999) / 1000);
        }

        /// Binary suffixes multiply by powers of 1024, exactly.
        #[test]
        fn binary_suffixes(n in 0i64..1_000_000, i in 0usize..4) {
            let (suffix, shift) = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40)][i];
            prop_assert_eq!(value(&format!("{n}{suffix}")), n << shift);
            prop_assert_eq!(format_amount("memory", n << shift).parse::<Quantity>().unwrap().value(), n << shift);
        }

        /// Rounding is up: the amount is never below the exact value and less than one unit above.
        #[test]
        fn rounding_is_up(whole in 0i64..100_000, fraction in 0u32..1_000_000) {
            let s = format!("{whole}.{fraction:06}");
            let exact_micro = whole as i128 * 1_000_000 + i128::from(fraction);
            let v = i128::from(value(&s)) * 1_000_000;
            prop_assert!(v >= exact_micro && v - exact_micro < 1_000_000);
        }

        /// Nothing panics on arbitrary input.
        #[test]
        fn arbitrary_strings_do_not_panic(s in "[-+0-9.eEinumkKMGTP]{0,12}") {
            if let Ok(q) = Quantity::parse(&s) {
                let _ = (q.milli_value(), q.value());
            }
        }
    }
}
