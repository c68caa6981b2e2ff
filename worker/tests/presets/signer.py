"""Signs test requests the way each provider documents it, independently of the
worker's Rust code (worker/tests/presets.rs drives it).

stdin: a JSON array of {"preset", "secrets", "body", "content_type", "url",
"timestamp", "message_id"}; "url" is the URL the provider is configured with.
stdout: a JSON array of {"headers": [[name, value], ...], "keys": [...], "url"},
where "keys" are what the verifier is configured with for each of "secrets": the
secret itself for HMAC and token schemes, the public key for the asymmetric ones
(whose "secrets" are seeds of the private keys); "url" is the URL the provider
called (Twilio adds bodySHA256 to it for a JSON body).

Schemes that carry several signatures list one per secret; the others sign with
the last secret.
"""

import base64
import datetime
import hashlib
import hmac
import json
import re
import sys
from urllib.parse import parse_qsl

# HubSpot's v3 instructions: these escapes are decoded in the URI before signing.
HUBSPOT_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}


def mac(algorithm, secret, message):
    return hmac.new(secret.encode(), message, algorithm).digest()


def sha256_hex(secret, message):
    return mac(hashlib.sha256, secret, message).hex()


def rfc3339(unix):
    # Twitch sends nanoseconds; the verifier must read the fraction.
    moment = datetime.datetime.fromtimestamp(unix, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ".123456789Z"


def ed25519_key(seed):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def p256_key(seed):
    from cryptography.hazmat.primitives.asymmetric import ec

    scalar = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (2**255)
    return ec.derive_private_key(scalar, ec.SECP256R1())


def sign(request):
    preset = request["preset"]
    secrets = request["secrets"]
    last = secrets[-1]
    body = request["body"].encode()
    ts = str(request["timestamp"])
    keys = list(secrets)
    url = request.get("url", "")
    if preset == "typeform":
        digest = base64.b64encode(mac(hashlib.sha256, last, body)).decode()
        headers = [["Typeform-Signature", "sha256=" + digest]]
    elif preset in ("bitbucket", "jira"):
        headers = [["X-Hub-Signature", "sha256=" + sha256_hex(last, body)]]
    elif preset == "sentry":
        headers = [["Sentry-Hook-Signature", sha256_hex(last, body)]]
    elif preset == "pagerduty":
        value = ",".join("v1=" + sha256_hex(s, body) for s in secrets)
        headers = [["X-PagerDuty-Signature", value]]
    elif preset == "linear":
        headers = [["Linear-Signature", sha256_hex(last, body)]]
    elif preset == "intercom":
        headers = [["X-Hub-Signature", "sha1=" + mac(hashlib.sha1, last, body).hex()]]
    elif preset == "vercel":
        headers = [["x-vercel-signature", mac(hashlib.sha1, last, body).hex()]]
    elif preset == "paddle":
        signed = ts.encode() + b":" + body
        value = ";".join(["ts=" + ts] + ["h1=" + sha256_hex(s, signed) for s in secrets])
        headers = [["Paddle-Signature", value]]
    elif preset == "calendly":
        signed = ts.encode() + b"." + body
        headers = [["Calendly-Webhook-Signature", "t=%s,v1=%s" % (ts, sha256_hex(last, signed))]]
    elif preset == "zoom":
        signed = b"v0:" + ts.encode() + b":" + body
        headers = [
            ["x-zm-request-timestamp", ts],
            ["x-zm-signature", "v0=" + sha256_hex(last, signed)],
        ]
    elif preset == "twitch":
        stamp = rfc3339(request["timestamp"])
        signed = request["message_id"].encode() + stamp.encode() + body
        headers = [
            ["Twitch-Eventsub-Message-Id", request["message_id"]],
            ["Twitch-Eventsub-Message-Timestamp", stamp],
            ["Twitch-Eventsub-Message-Signature", "sha256=" + sha256_hex(last, signed)],
        ]
    elif preset == "gitlab":
        headers = [["X-Gitlab-Token", last]]
    elif preset == "discord":
        from cryptography.hazmat.primitives import serialization

        raw = serialization.Encoding.Raw
        keys = [
            ed25519_key(s).public_key().public_bytes(raw, serialization.PublicFormat.Raw).hex()
            for s in secrets
        ]
        signature = ed25519_key(last).sign(ts.encode() + body).hex()
        headers = [["X-Signature-Ed25519", signature], ["X-Signature-Timestamp", ts]]
    elif preset == "sendgrid":
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        der = serialization.Encoding.DER
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        keys = [
            base64.b64encode(p256_key(s).public_key().public_bytes(der, spki)).decode()
            for s in secrets
        ]
        signature = p256_key(last).sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers = [
            ["X-Twilio-Email-Event-Webhook-Signature", base64.b64encode(signature).decode()],
            ["X-Twilio-Email-Event-Webhook-Timestamp", ts],
        ]
    elif preset == "twilio":
        # twilio-python's RequestValidator: the URL, then for a form body each
        # name and value, sorted; a JSON body is signed through its hash in the URL.
        if request["content_type"] == "application/json":
            url += ("&" if "?" in url else "?") + "bodySHA256=" + hashlib.sha256(body).hexdigest()
            signed = url
        else:
            params = parse_qsl(body.decode(), keep_blank_values=True)
            signed = url + "".join(name + value for name, value in sorted(set(params)))
        digest = base64.b64encode(mac(hashlib.sha1, last, signed.encode())).decode()
        headers = [["X-Twilio-Signature", digest]]
    elif preset == "square":
        # Square's WebhooksHelper: the notification URL followed by the body.
        digest = base64.b64encode(mac(hashlib.sha256, last, url.encode() + body)).decode()
        headers = [["x-square-hmacsha256-signature", digest]]
    elif preset == "hubspot":
        millis = str(request["timestamp"] * 1000 + 123)
        uri = re.sub(
            "%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)",
            lambda m: HUBSPOT_DECODED[m.group(0).upper()],
            url,
            flags=re.IGNORECASE,
        )
        signed = b"POST" + uri.encode() + body + millis.encode()
        digest = base64.b64encode(mac(hashlib.sha256, last, signed)).decode()
        headers = [["X-HubSpot-Signature-v3", digest], ["X-HubSpot-Request-Timestamp", millis]]
    else:
        raise SystemExit("signer.py: no scheme for preset %r" % preset)
    return {"headers": headers, "keys": keys, "url": url}


json.dump([sign(r) for r in json.load(sys.stdin)], sys.stdout)
