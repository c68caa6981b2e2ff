//! ACM, Route 53 and IAM implementations against MiniStack, LocalStack and moto:
//! create, read, update, repeat-is-no-op, ownership, delete.

use anyhow::{Context, Result, bail};
use aws_sdk_route53::types::RrType;
use hookline_operator::aws::certificates::Status;
use hookline_operator::aws::dns::Value;
use hookline_operator::aws::limits::CallCounts;
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::{
    AcmCertificates, AwsClients, AwsError, CertificateSpec, IamRoles, Owner, RateLimits, Record,
    RetryPolicy, RoleSpec, Route53Dns,
};
use hookline_tests::{Bench, Emulator, EmulatorKind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn owner(uid: &str) -> Owner {
    Owner {
        uid: uid.to_owned(),
        resource: "WebhookGateway public".to_owned(),
    }
}

async fn clients(emulator: &Emulator) -> AwsClients {
    AwsClients::new(
        &emulator.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    )
}

/// Calls other than reads made since `before`, as `Operation:outcome`.
fn writes(clients: &AwsClients, before: &CallCounts) -> Vec<String> {
    clients
        .caller
        .snapshot()
        .into_iter()
        .filter(|((_, op, _), _)| {
            !["Get", "List", "Describe"]
                .iter()
                .any(|p| op.starts_with(p))
        })
        .filter(|(key, n)| before.get(key).is_none_or(|b| n > b))
        .map(|((_, op, outcome), _)| format!("{op}:{outcome}"))
        .collect()
}

async fn certificates(emulator: &Emulator) -> Result<()> {
    let clients = clients(emulator).await;
    let acm = AcmCertificates::new(clients.acm.clone(), clients.caller.clone());
    let domain = format!("{}.example.com", unique("hooks"));
    let spec = CertificateSpec {
        domain: domain.clone(),
        owner: owner("gw-uid-1"),
        tags: vec![("team".to_owned(), "platform".to_owned())],
    };
    let certificate = acm.ensure(&spec).await?;
    assert!(
        certificate.arn.starts_with("arn:aws:acm:"),
        "{certificate:?}"
    );
    assert!(
        matches!(certificate.status, Status::Pending | Status::Issued),
        "{certificate:?}"
    );
    assert!(
        certificate
            .validation_records
            .iter()
            .all(|r| r.kind == "CNAME" && r.name.contains(&domain)),
        "{certificate:?}"
    );

    let before = clients.caller.snapshot();
    let again = acm.ensure(&spec).await?;
    assert_eq!(
        again.arn, certificate.arn,
        "found by its owner tag, not requested twice"
    );
    assert_eq!(writes(&clients, &before), Vec::<String>::new());

    // Someone else's certificate for the same domain is neither used nor deleted.
    let theirs = acm
        .ensure(&CertificateSpec {
            owner: owner("gw-uid-2"),
            ..spec.clone()
        })
        .await?;
    assert_ne!(theirs.arn, certificate.arn);
    match acm.delete(&theirs.arn, &spec.owner).await {
        Err(AwsError::NotOwned { message, .. }) => {
            assert!(message.contains("belongs to gw-uid-2"), "{message}")
        }
        other => bail!("expected a conflict, got {other:?}"),
    }

    acm.delete(&certificate.arn, &spec.owner).await?;
    acm.delete(&certificate.arn, &spec.owner).await?;
    assert!(
        acm.describe(&certificate.arn)
            .await
            .is_err_and(|e| e.is_not_found())
    );
    Ok(())
}

async fn dns(emulator: &Emulator) -> Result<()> {
    let clients = clients(emulator).await;
    let dns = Route53Dns::new(clients.route53.clone(), clients.caller.clone());
    let zone_name = format!("{}.example.com", unique("zone"));
    // The platform team owns the zone; Hookline only writes records into it.
    clients
        .route53
        .create_hosted_zone()
        .name(&zone_name)
        .caller_reference(unique("ref"))
        .send()
        .await?;
    let zone = dns.zone_by_name(&zone_name).await?;
    assert!(
        dns.zone_by_name(&format!("missing.{zone_name}"))
            .await
            .is_err_and(|e| e.is_not_found())
    );

    let host = format!("hooks.{zone_name}");
    let records = vec![
        Record::txt(
            &format!("_hookline.{host}"),
            "owner=cluster-a/gw-uid-1",
            300,
        ),
        Record {
            name: format!("_abc.{host}"),
            kind: RrType::Cname,
            value: Value::Plain {
                values: vec!["_xyz.acm-validations.aws.".to_owned()],
                ttl: 300,
            },
        },
        Record {
            name: host.clone(),
            kind: RrType::A,
            value: Value::Alias {
                target: "d-abc123.execute-api.us-east-1.amazonaws.com".to_owned(),
                zone_id: "Z1UJRXOUMOOFQ8".to_owned(),
            },
        },
    ];
    let change = dns.ensure_records(&zone, &records).await?;
    let Some(change) = change else {
        bail!("the first ensure must change something")
    };
    assert!(
        dns.wait_in_sync(&change, Duration::from_secs(30)).await?,
        "change never INSYNC"
    );
    let alias = dns.records(&zone, &host).await?;
    assert_eq!(alias.len(), 1, "{alias:?}");
    assert_eq!(alias[0].kind, RrType::A);

    let before = clients.caller.snapshot();
    assert_eq!(
        dns.ensure_records(&zone, &records).await?,
        None,
        "nothing differs"
    );
    assert_eq!(writes(&clients, &before), Vec::<String>::new());

    // Drift: the TXT record edited out of band is put back, in one batch.
    let mut changed = records.clone();
    changed[0] = Record::txt(
        &format!("_hookline.{host}"),
        "owner=cluster-a/gw-uid-1;v=2",
        300,
    );
    let before = clients.caller.snapshot();
    assert!(dns.ensure_records(&zone, &changed).await?.is_some());
    assert_eq!(writes(&clients, &before), ["ChangeResourceRecordSets:ok"]);
    let txt = dns.records(&zone, &format!("_hookline.{host}")).await?;
    assert_eq!(txt, vec![changed[0].clone().normalized()]);

    dns.delete_records(&zone, &changed).await?;
    dns.delete_records(&zone, &changed).await?;
    assert!(dns.records(&zone, &host).await?.is_empty());
    Ok(())
}

async fn roles(emulator: &Emulator) -> Result<()> {
    let clients = clients(emulator).await;
    let roles = IamRoles::new(clients.iam.clone(), clients.caller.clone());
    let spec = RoleSpec {
        name: unique("hookline-gw-"),
        region: "us-east-1".to_owned(),
        queue_prefix: "hl".to_owned(),
        owner: owner("gw-uid-1"),
    };
    let arn = roles.ensure(&spec).await?;
    assert!(arn.contains(&spec.name), "{arn}");

    let before = clients.caller.snapshot();
    assert_eq!(roles.ensure(&spec).await?, arn);
    assert_eq!(
        writes(&clients, &before),
        Vec::<String>::new(),
        "a repeat only reads"
    );

    // Drift: a wider policy put by hand is narrowed again.
    clients
        .iam
        .put_role_policy()
        .role_name(&spec.name)
        .policy_name("hookline-send-to-queues")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}"#)
        .send()
        .await?;
    let before = clients.caller.snapshot();
    roles.ensure(&spec).await?;
    assert_eq!(writes(&clients, &before), ["PutRolePolicy:ok"]);

    match roles
        .ensure(&RoleSpec {
            owner: owner("gw-uid-2"),
            ..spec.clone()
        })
        .await
    {
        Err(AwsError::NotOwned { message, .. }) => {
            assert!(message.contains("belongs to gw-uid-1"), "{message}")
        }
        other => bail!("expected a conflict, got {other:?}"),
    }
    roles.delete(&spec.name, &spec.owner).await?;
    roles.delete(&spec.name, &spec.owner).await?;
    assert!(
        clients
            .iam
            .get_role()
            .role_name(&spec.name)
            .send()
            .await
            .is_err()
    );

    // A role someone else made with our name is not adopted.
    let foreign = unique("hookline-gw-");
    clients
        .iam
        .create_role()
        .role_name(&foreign)
        .assume_role_policy_document(hookline_operator::aws::roles::trust_policy().to_string())
        .send()
        .await?;
    match roles
        .ensure(&RoleSpec {
            name: foreign.clone(),
            ..spec.clone()
        })
        .await
    {
        Err(AwsError::NotOwned { message, .. }) => assert!(
            message.contains("without Hookline's owner tag"),
            "{message}"
        ),
        other => bail!("expected a conflict, got {other:?}"),
    }
    Ok(())
}

/// A self-signed certificate for `domain` that expires a few seconds from now (ACM
/// refuses to import one already expired), as (PEM, key PEM), made with the emulator
/// venv's `cryptography` (moto's own dependency).
fn expired_certificate(domain: &str) -> Result<(String, String)> {
    let script = r#"
import sys, datetime
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
now = datetime.datetime.now(datetime.timezone.utc)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sys.argv[1])])
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
    .public_key(key.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(seconds=3))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName(sys.argv[1])]), critical=False)
    .sign(key, hashes.SHA256()))
sys.stdout.write(cert.public_bytes(serialization.Encoding.PEM).decode())
sys.stdout.write("--split--")
sys.stdout.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode())
"#;
    let python = hookline_tests::emulator_venv()?.join("python");
    let out = std::process::Command::new(python)
        .args(["-c", script, domain])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "making a certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let (cert, key) = text
        .split_once("--split--")
        .context("no certificate and key")?;
    Ok((cert.to_owned(), key.to_owned()))
}

/// ACM never issues a certificate that ended FAILED, VALIDATION_TIMED_OUT, EXPIRED or
/// REVOKED again. Ours in such a state is not adopted by `ensure`, and `replace`
/// requests a new one despite the idempotency token of the first request. moto is
/// the emulator that can hold one (an imported certificate past its end date reads
/// EXPIRED); MiniStack issues everything.
async fn terminal_certificates(emulator: &Emulator) -> Result<()> {
    let clients = clients(emulator).await;
    let acm = AcmCertificates::new(clients.acm.clone(), clients.caller.clone());
    let domain = format!("{}.example.com", unique("expired"));
    let spec = CertificateSpec {
        domain: domain.clone(),
        owner: owner("gw-uid-9"),
        tags: Vec::new(),
    };
    let (pem, key) = expired_certificate(&domain)?;
    let expired = clients
        .acm
        .import_certificate()
        .certificate(aws_sdk_acm::primitives::Blob::new(pem))
        .private_key(aws_sdk_acm::primitives::Blob::new(key))
        .set_tags(Some(
            spec.owner
                .tags()
                .into_iter()
                .map(|(k, v)| aws_sdk_acm::types::Tag::builder().key(k).value(v).build())
                .collect::<Result<Vec<_>, _>>()?,
        ))
        .send()
        .await?
        .certificate_arn
        .context("no ARN")?;
    hookline_tests::util::wait_for(
        "the imported certificate to expire",
        Duration::from_secs(30),
        || async { Ok(acm.describe(&expired).await?.status.is_terminal()) },
    )
    .await?;

    let ensured = acm.ensure(&spec).await?;
    assert_ne!(
        ensured.arn, expired,
        "an expired certificate is not adopted"
    );
    assert!(!ensured.status.is_terminal(), "{ensured:?}");

    let replaced = acm.replace(&spec, &ensured.arn).await?;
    assert_ne!(
        replaced.arn, ensured.arn,
        "a replacement is a new request, not the first one again"
    );
    let again = acm.replace(&spec, &ensured.arn).await?;
    assert_eq!(
        again.arn, replaced.arn,
        "a retried replacement is the same one"
    );
    for arn in [expired, ensured.arn, replaced.arn] {
        acm.delete(&arn, &spec.owner).await?;
    }
    Ok(())
}

#[tokio::test]
async fn moto_terminal_certificates_are_replaced() -> Result<()> {
    let bench = Bench::shared().await?;
    let moto = bench.start_emulator(EmulatorKind::Moto).await?;
    terminal_certificates(&moto).await
}

#[tokio::test]
async fn ministack_certificates() -> Result<()> {
    certificates(&Bench::shared().await?.aws).await
}

#[tokio::test]
async fn ministack_dns() -> Result<()> {
    dns(&Bench::shared().await?.aws).await
}

#[tokio::test]
async fn ministack_roles() -> Result<()> {
    roles(&Bench::shared().await?.aws).await
}

#[tokio::test]
async fn localstack_certificates_dns_and_roles() -> Result<()> {
    let bench = Bench::shared().await?;
    let localstack = bench.data_plane(EmulatorKind::LocalStack).await?;
    certificates(localstack).await?;
    dns(localstack).await?;
    roles(localstack).await
}

#[tokio::test]
async fn moto_certificates_dns_and_roles() -> Result<()> {
    let bench = Bench::shared().await?;
    let moto = bench.start_emulator(EmulatorKind::Moto).await?;
    certificates(&moto).await?;
    dns(&moto).await?;
    roles(&moto).await
}
