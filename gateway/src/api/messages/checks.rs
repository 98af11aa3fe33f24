//! The rules the message types share: required fields, text lengths, links
//! and fields that a type does not take. Every error names the field by its
//! path in the request (`template.components[1].parameters[0].text`).

use crate::error::{ApiError, ErrorKind};

/// The value of a required field, or 1008 naming it and what it is for.
pub(super) fn required<T>(value: Option<T>, path: &str, what: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::missing(format!("{path} is required: {what}")))
}

/// A text of 1 to `max` characters (not bytes), not only blanks.
pub(super) fn text(value: &str, path: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(format!("{path} must not be empty")));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(ApiError::invalid(format!("{path} is {chars} characters long; the limit is {max}")));
    }
    Ok(())
}

/// An optional [`text`].
pub(super) fn optional_text(value: Option<&str>, path: &str, max: usize) -> Result<(), ApiError> {
    value.map_or(Ok(()), |v| text(v, path, max))
}

/// An absolute http or https URL with a host.
pub(super) fn link(value: &str, path: &str) -> Result<(), ApiError> {
    let refused = |why: &str| ApiError::invalid(format!("{path} must be an http(s) URL ({why}), not {value:?}"));
    let url = url::Url::parse(value.trim()).map_err(|e| refused(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused("only http and https links are fetched"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refused("it has no host"));
    }
    Ok(())
}

/// 1010 when a field is present where it has no use.
pub(super) fn absent<T>(value: &Option<T>, path: &str, why: &str) -> Result<(), ApiError> {
    match value {
        Some(_) => Err(ApiError::new(ErrorKind::UnknownParameter, format!("{path} is not allowed: {why}"))),
        None => Ok(()),
    }
}

/// 1009 unless `value` is one of `allowed`.
pub(super) fn one_of(value: &str, path: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{path} must be one of {}, not {value:?}", allowed.join(", "))))
    }
}

/// 1009 unless `items` has `min` to `max` entries.
pub(super) fn count<T>(items: &[T], path: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if (min..=max).contains(&items.len()) {
        Ok(())
    } else if min == max {
        Err(ApiError::invalid(format!("{path} must have exactly {min} entries, not {}", items.len())))
    } else {
        Err(ApiError::invalid(format!("{path} must have {min} to {max} entries, not {}", items.len())))
    }
}

/// 1009 when two entries of `values` are equal (ids and titles users pick from).
pub(super) fn distinct<'a>(values: impl IntoIterator<Item = &'a str>, path: &str) -> Result<(), ApiError> {
    let mut seen = std::collections::HashSet::new();
    for value in values {
        if !seen.insert(value) {
            return Err(ApiError::invalid(format!("{path} must be unique; {value:?} appears twice")));
        }
    }
    Ok(())
}

/// 1009 unless `value` lies in `range`.
pub(super) fn within<T>(value: T, path: &str, range: std::ops::RangeInclusive<T>) -> Result<(), ApiError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{path} must be {} to {}, not {value}", range.start(), range.end())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_be_http_with_a_host() {
        assert!(link("https://example.com/a.jpg", "image.link").is_ok());
        assert!(link("http://10.0.0.1:8080/x", "image.link").is_ok());
        for bad in ["ftp://example.com/a", "file:///etc/passwd", "example.com/a.jpg", "https://", "javascript:alert(1)"]
        {
            let err = link(bad, "image.link").unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidParameter, "{bad}");
            assert!(err.details.starts_with("image.link"), "{}", err.details);
        }
    }

    #[test]
    fn text_counts_characters_and_refuses_blanks() {
        assert!(text(&"é".repeat(20), "x", 20).is_ok());
        assert!(text(&"é".repeat(21), "x", 20).unwrap_err().details.contains("21 characters"));
        assert!(text("  ", "x", 20).is_err());
    }

    #[test]
    fn distinct_names_the_repeated_value() {
        assert!(distinct(["a", "b"], "ids").is_ok());
        assert!(distinct(["a", "b", "a"], "ids").unwrap_err().details.contains("\"a\""));
    }
}
