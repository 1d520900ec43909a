"""Print a demo token for the JWT example, and the page URL that uses it.

.venv/bin/python examples/jwt/make_token.py alice [--minutes 60]

(from the repository root; it needs PyJWT, which .venv has: `pip install 'hubbub[jwt]'` elsewhere)
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

import jwt

HERE = Path(__file__).resolve().parent


def make_token(user: str, minutes: float = 60) -> str:
    config = tomllib.loads((HERE / "hubbub.toml").read_text())["authorizer"]["jwt"]
    claims = {
        "sub": user,
        "iss": config["issuer"],
        "aud": config["audience"],
        "exp": int(time.time() + minutes * 60),
        "name": user.title(),
    }
    return jwt.encode(claims, config["secret"], algorithm="HS256")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("user")
    parser.add_argument("--minutes", type=float, default=60)
    args = parser.parse_args()
    token = make_token(args.user, args.minutes)
    print(token)
    print(f"http://127.0.0.1:8095/?token={token}")


if __name__ == "__main__":
    main()
