//! The message format shared by the gateway's mapping template (which writes each
//! request into SQS) and the worker (which reads it back).
//!
//! - The body is the raw request body.
//! - Each forwarded request header is one String message attribute named
//!   `Header.<lowercase name>` ([`header_attribute_name`]), whose value starts with a
//!   one-character marker. The template renders an absent header as an empty string,
//!   and SQS refuses empty attribute values; with the marker, the marker alone means
//!   "absent".
//!   - `%` ([`ENCODED_HEADER_VALUE_MARKER`]), written by the gateway: the value is
//!     URL-encoded (`application/x-www-form-urlencoded`, as Velocity's
//!     `$util.urlEncode` writes it), because the template picks one of several
//!     lookups by splitting on a character the encoding never leaves.
//!   - `:` ([`HEADER_VALUE_MARKER`]): the raw value, as gateways before the
//!     encoded form wrote it (messages still queued from them) and as
//!     [`raw_header_value`] writes it for producers that send directly.
//! - SQS allows ten message attributes per message: the gateway forwards at most
//!   [`MAX_FORWARDED_HEADERS`], leaving room for one of the worker's own.
//! - [`QUEUED_AT_ATTRIBUTE`]: when the gateway first queued the request, written by
//!   the worker whenever it moves a message to another queue (to the dead-letter
//!   queue, back by a redrive). A moved message is a new message to SQS, with a new
//!   `SentTimestamp` (and a FIFO queue resets the enqueue time of what it moves to its
//!   dead-letter queue itself), so without it a redriven Stripe event would be checked
//!   against the redrive time and refused as a replay.
//!
//! A template cannot loop over all headers portably (emulators run a subset of
//! Velocity), so the operator forwards a fixed list: the signature preset's headers
//! ([`crate::signature::forwarded_headers`]), the ordering and deduplication headers,
//! `content-type` and `user-agent`.

/// Prefix of the message attributes that carry request headers.
pub const HEADER_ATTRIBUTE_PREFIX: &str = "Header.";

/// Leads a raw header attribute value, so that an absent header is not empty.
pub const HEADER_VALUE_MARKER: char = ':';

/// Leads a URL-encoded header attribute value (what the gateway writes).
pub const ENCODED_HEADER_VALUE_MARKER: char = '%';

/// How many headers one message may carry (SQS's limit of ten attributes, less one
/// for the worker's [`QUEUED_AT_ATTRIBUTE`]).
pub const MAX_FORWARDED_HEADERS: usize = 9;

/// SQS's limit of message attributes per message.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// When the gateway first queued the request (epoch milliseconds), carried across
/// the worker's moves between queues. Only the worker writes it: the gateway writes
/// `Header.*` attributes only, so a caller of the public endpoint cannot set it;
/// whoever holds `sqs:SendMessage` on the queue can, and is trusted as the gateway is.
pub const QUEUED_AT_ATTRIBUTE: &str = "Hookline-Queued-At";

/// The attribute that carries header `name` (any case).
pub fn header_attribute_name(name: &str) -> String {
    format!("{HEADER_ATTRIBUTE_PREFIX}{}", name.to_ascii_lowercase())
}

/// The header an attribute carries, if it carries one.
pub fn header_name(attribute: &str) -> Option<&str> {
    attribute.strip_prefix(HEADER_ATTRIBUTE_PREFIX)
}

/// The attribute value for a raw header value, as producers that send directly
/// write it (the gateway writes the encoded form).
pub fn raw_header_value(value: &str) -> String {
    format!("{HEADER_VALUE_MARKER}{value}")
}

/// The header value a `Header.*` attribute value carries, in either form; `None`
/// when the header was absent (the marker alone, or nothing).
pub fn header_value(attribute_value: &str) -> Option<Vec<u8>> {
    let value = match attribute_value.strip_prefix(ENCODED_HEADER_VALUE_MARKER) {
        Some(encoded) => form_decode(encoded),
        None => attribute_value
            .strip_prefix(HEADER_VALUE_MARKER)
            .unwrap_or(attribute_value)
            .as_bytes()
            .to_vec(),
    };
    (!value.is_empty()).then_some(value)
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte.
fn form_decode(encoded: &str) -> Vec<u8> {
    let spaced = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_in_either_form() {
        let cases: [(&str, Option<&[u8]>); 7] = [
            // What Velocity's $util.urlEncode writes, behind the gateway's marker.
            ("%t%3D1%2Cv1%3D00", Some(b"t=1,v1=00")),
            (
                "%Stripe%2F1.0+%28%2Bhttps%3A%2F%2Fstripe.com%29",
                Some(b"Stripe/1.0 (+https://stripe.com)"),
            ),
            ("%", None),
            (":t=2,v1=11", Some(b"t=2,v1=11")),
            (":", None),
            ("", None),
            ("unmarked", Some(b"unmarked")),
        ];
        for (attribute, want) in cases {
            assert_eq!(header_value(attribute).as_deref(), want, "{attribute:?}");
        }
    }

    #[test]
    fn raw_values_and_names_read_back() {
        let name = header_attribute_name("Stripe-Signature");
        assert_eq!(name, "Header.stripe-signature");
        assert_eq!(header_name(&name), Some("stripe-signature"));
        assert_eq!(header_name(QUEUED_AT_ATTRIBUTE), None);
        let value = raw_header_value("50% off+more");
        assert_eq!(header_value(&value).as_deref(), Some(&b"50% off+more"[..]));
    }
}
