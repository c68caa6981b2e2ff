//! Whether the gateway's alias records may be written over what the hosted zone
//! holds at its hostname (pure).
//!
//! Route 53's `UPSERT` replaces a record set of the same name and type without
//! asking, so an `A` record a team already serves its old webhook endpoint from, or
//! an alias to someone else's load balancer, would be overwritten the moment the
//! gateway's certificate is issued: their traffic moves to us before anyone decided
//! it should. The `_hookline` TXT record proves who owns the hostname *for Hookline*;
//! it says nothing about records made by hand or by other tools. So the alias is
//! written only over nothing, or over an alias to this gateway's own API Gateway
//! domain (the current one, or the one its status recorded before a replacement).

use crate::aws::dns::{Record, Value, fqdn};
use aws_sdk_route53::types::RrType;

/// The record at the hostname that the alias must not replace, described for a
/// condition message; `None` when the alias records may be written.
///
/// `ours` are the API Gateway regional domain names an alias of ours may point to.
pub fn alias_conflict(existing: &[Record], hostname: &str, ours: &[&str]) -> Option<String> {
    let name = fqdn(hostname);
    let ours: Vec<String> = ours.iter().map(|target| fqdn(target)).collect();
    existing
        .iter()
        .filter(|record| fqdn(&record.name) == name)
        .find_map(|record| match (&record.kind, &record.value) {
            // Route 53 refuses any other record next to a CNAME, and the CNAME is
            // someone's: either way the alias cannot go there.
            (RrType::Cname, _) => Some(format!("{hostname} has a CNAME record")),
            (RrType::A | RrType::Aaaa, Value::Plain { values, .. }) => Some(format!(
                "{hostname} has an {} record ({}) that is not an alias made by Hookline",
                record.kind.as_str(),
                values.join(", ")
            )),
            (RrType::A | RrType::Aaaa, Value::Alias { target, .. })
                if !ours.contains(&fqdn(target)) =>
            {
                Some(format!(
                    "{hostname} has an {} alias to {}, not to this gateway's API Gateway domain",
                    record.kind.as_str(),
                    target.trim_end_matches('.')
                ))
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, kind: RrType, value: Value) -> Record {
        Record {
            name: name.to_owned(),
            kind,
            value,
        }
    }

    fn alias(target: &str) -> Value {
        Value::Alias {
            target: target.to_owned(),
            zone_id: "Z2FDTNDATAQYW2".to_owned(),
        }
    }

    fn plain(value: &str) -> Value {
        Value::Plain {
            values: vec![value.to_owned()],
            ttl: 300,
        }
    }

    const HOST: &str = "hooks.example.com";
    const OURS: &str = "d-abc.execute-api.eu-west-1.amazonaws.com";
    const OLD: &str = "d-old.execute-api.eu-west-1.amazonaws.com";

    #[test]
    fn the_alias_is_written_only_over_nothing_or_an_alias_of_ours() {
        let cases: Vec<(&str, Vec<Record>, bool)> = vec![
            ("nothing there", vec![], false),
            (
                "our alias, as Route 53 reports it",
                vec![record(
                    "Hooks.Example.com.",
                    RrType::A,
                    alias(&format!("{}.", OURS.to_uppercase())),
                )],
                false,
            ),
            (
                "the alias to the domain the status recorded",
                vec![record(HOST, RrType::Aaaa, alias(OLD))],
                false,
            ),
            (
                "a TXT or MX at the hostname is no business of the alias",
                vec![
                    record(HOST, RrType::Txt, plain("\"v=spf1 -all\"")),
                    record(HOST, RrType::Mx, plain("10 mail.example.com")),
                ],
                false,
            ),
            (
                "another name's A record",
                vec![record(
                    "old.hooks.example.com",
                    RrType::A,
                    plain("192.0.2.1"),
                )],
                false,
            ),
            (
                "a plain A record made by hand",
                vec![record(HOST, RrType::A, plain("192.0.2.1"))],
                true,
            ),
            (
                "a plain AAAA record",
                vec![record(HOST, RrType::Aaaa, plain("2001:db8::1"))],
                true,
            ),
            (
                "an alias to a load balancer",
                vec![record(
                    HOST,
                    RrType::A,
                    alias("dualstack.my-alb-1.eu-west-1.elb.amazonaws.com."),
                )],
                true,
            ),
            (
                "a CNAME",
                vec![record(HOST, RrType::Cname, plain("elsewhere.example.net"))],
                true,
            ),
            (
                "our A alias next to a foreign AAAA",
                vec![
                    record(HOST, RrType::A, alias(OURS)),
                    record(HOST, RrType::Aaaa, plain("2001:db8::1")),
                ],
                true,
            ),
        ];
        for (case, existing, conflict) in cases {
            let found = alias_conflict(&existing, HOST, &[OURS, OLD]);
            assert_eq!(found.is_some(), conflict, "{case}: {found:?}");
        }
    }

    #[test]
    fn the_message_names_the_record() {
        let found = alias_conflict(
            &[record(HOST, RrType::A, plain("192.0.2.1"))],
            HOST,
            &[OURS],
        );
        assert_eq!(
            found.as_deref(),
            Some(
                "hooks.example.com has an A record (192.0.2.1) that is not an alias made by Hookline"
            )
        );
    }
}
