"""The consumer a team would otherwise write: receive up to 10, POST each to the
handler, delete it. The baseline for `make bench-worker`; it prints one JSON line.
Like hookline-worker, it tells the handler when it read each message from the
receive's answer (`Hookline-Received-At`, epoch milliseconds), so the benchmark
measures both consumers' receive-to-handler latency the same way.

Usage: python boto3_consumer.py QUEUE_URL HANDLER_URL COUNT
(AWS_ENDPOINT_URL and test credentials come from the environment)
"""

import http.client
import json
import resource
import sys
import time
import urllib.parse

import boto3


def main() -> None:
    queue_url, handler_url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sqs = boto3.client("sqs")
    target = urllib.parse.urlsplit(handler_url)
    conn = http.client.HTTPConnection(target.hostname, target.port)
    handled = 0
    started = time.monotonic()
    # Bounded: at most one empty poll per expected message before giving up.
    for _ in range(count * 2):
        if handled >= count:
            break
        out = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        received_at = "%.3f" % (time.time() * 1000)
        for message in out.get("Messages", []):
            conn.request(
                "POST",
                target.path or "/",
                body=message["Body"].encode(),
                headers={"Hookline-Received-At": received_at},
            )
            response = conn.getresponse()
            response.read()
            if 200 <= response.status < 300:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                handled += 1
    elapsed = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"handled": handled, "seconds": elapsed, "cpu_seconds": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    main()
