"""The compose test stack's object store: moto's S3 server in a container, with the stack's bucket made.

Run by the ``object-store`` service of compose.test.yaml with the project's own moto (and the few pure-Python
packages it needs beyond the Driftloop image) mounted read-only under ``/opt/object-store/site``; test tools
stay out of the image. Standard library plus those packages only.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, "/opt/object-store/site")


def main() -> None:
    """Serve S3 on 0.0.0.0:9000 inside the project's network and create ``$OBJECT_STORE_BUCKET``."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise

    server = ThreadedMotoServer(ip_address="0.0.0.0", port=9000, verbose=False)
    server.start()
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9000",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=os.environ["OBJECT_STORE_BUCKET"])
    with open("/tmp/object-store.ready", "w") as ready:  # the health check: up, and the bucket made
        ready.write("ready\n")
    print(f"object store ready: bucket {os.environ['OBJECT_STORE_BUCKET']} on :9000", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
