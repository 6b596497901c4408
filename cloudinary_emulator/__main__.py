"""``python -m cloudinary_emulator``: run the emulator under waitress and print its CLOUDINARY_URL."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, Sequence

from cloudinary_emulator.faults import FaultError, Faults, validated
from cloudinary_emulator.settings import (
    DEFAULT_API_KEY, DEFAULT_API_SECRET, DEFAULT_CLOUD_NAME, Settings, env_credentials)

ENV_PREFIX = "CLOUDINARY_EMULATOR_"
FAULT_FLAGS = [f for f in Faults().to_dict()]
#: What stands for the api secret in the URL line the emulator prints (see ``--print-secret``).
SECRET_MASK = "<api-secret>"


def env_default(name: str, default: Any) -> Any:
    """``--some-flag`` falls back to ``CLOUDINARY_EMULATOR_SOME_FLAG``, then to ``default``."""
    return os.environ.get(ENV_PREFIX + name.upper(), default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cloudinary_emulator",
                                description="A local Cloudinary-compatible server.")
    p.add_argument("--host", default=env_default("host", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env_default("port", 9443)),
                   help="0 picks a free port (the printed URL tells which)")
    p.add_argument("--data-dir", default=env_default("data_dir", "var/cloudinary"))
    p.add_argument("--cloud-name", help="default: from CLOUDINARY_URL, else demo")
    p.add_argument("--api-key", help="default: from CLOUDINARY_URL, else 123123123123")
    p.add_argument("--api-secret", help="default: from CLOUDINARY_URL, else emulator-secret")
    p.add_argument("--print-secret", action="store_true",
                   help="write the api secret into the CLOUDINARY_URL line on stdout (for a parent that reads "
                        f"it from a pipe); by default it is {SECRET_MASK}, since stdout usually ends in a log")
    p.add_argument("--public-host", default=env_default("public_host", None),
                   help="host:port written into delivery URLs (default: the request's Host)")
    p.add_argument("--max-file-size", type=int,
                   default=int(env_default("max_file_size", 20 * 1024 * 1024)), help="bytes")
    p.add_argument("--max-megapixels", type=float,
                   default=float(env_default("max_megapixels", 25.0)),
                   help="larger images are refused (Cloudinary's free plan: 25)")
    p.add_argument("--signature-algorithm", choices=["sha1", "sha256"],
                   default=env_default("signature_algorithm", None),
                   help="accept only this digest (default: SHA-1 or SHA-256); signs notifications")
    p.add_argument("--notification-retries", type=int,
                   default=int(env_default("notification_retries", 3)))
    p.add_argument("--notification-retry-delay", type=float,
                   default=float(env_default("notification_retry_delay", 0.5)),
                   help="seconds before the first retry; doubles each time")
    p.add_argument("--notification-timeout", type=float,
                   default=float(env_default("notification_timeout", 10.0)))
    p.add_argument("--threads", type=int, default=int(env_default("threads", 64)),
                   help="request threads; each call hung by the hang_calls fault holds one")
    p.add_argument("--log-level", default=env_default("log_level", "INFO"))
    for name in FAULT_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), dest=name,
                       default=env_default(name, None), help=f"fault (default {getattr(Faults(), name)})")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    creds = {"cloud_name": DEFAULT_CLOUD_NAME, "api_key": DEFAULT_API_KEY,
             "api_secret": DEFAULT_API_SECRET}
    creds.update(env_credentials())
    for key in creds:
        if getattr(args, key):
            creds[key] = getattr(args, key)
    faults = validated(Faults(), {n: getattr(args, n) for n in FAULT_FLAGS
                                  if getattr(args, n) is not None})
    return Settings(
        **creds, data_dir=args.data_dir, host=args.host, port=args.port,
        public_host=args.public_host, max_file_size=args.max_file_size,
        max_megapixels=args.max_megapixels,
        signature_algorithm=args.signature_algorithm,
        notification_retries=args.notification_retries,
        notification_retry_delay=args.notification_retry_delay,
        notification_timeout=args.notification_timeout, threads=args.threads, faults=faults)


def client_url(settings: Settings, port: int, reveal_secret: bool = True) -> str:
    """The CLOUDINARY_URL a client uses: API via upload_prefix, delivery via cname."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    where = settings.public_host or f"{host}:{port}"
    secret = settings.api_secret if reveal_secret else SECRET_MASK
    return (f"cloudinary://{settings.api_key}:{secret}@{settings.cloud_name}"
            f"?upload_prefix=http://{where}&cname={where}&secure=false")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
    except (FaultError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import waitress.server

    from cloudinary_emulator.app import create_app

    app = create_app(settings)
    # Above Flask's own limit, so an oversized upload gets the Cloudinary-shaped error from the app
    # rather than waitress's plain-text one.
    body_limit = settings.max_file_size * 4 + 16 * 1024 * 1024
    server = waitress.server.create_server(
        app, host=settings.host, port=settings.port, threads=settings.threads,
        max_request_body_size=body_limit, ident="cloudinary-emulator", channel_timeout=60,
        # A channel stays readable while its request runs, so that a client closing the
        # connection is seen (``waitress.client_disconnected``): a call hung by ``hang_calls``
        # then frees its thread.
        channel_request_lookahead=1)
    port = int(server.effective_port)  # type: ignore[union-attr]
    # stdout usually ends in a log (honcho's, a supervisor's): the secret only when asked for.
    print(f"CLOUDINARY_URL={client_url(settings, port, reveal_secret=args.print_secret)}", flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        app.extensions["cloudinary_emulator"].shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
