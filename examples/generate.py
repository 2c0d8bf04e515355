"""Regenerate the sample landing files (deterministic): `python examples/generate.py`."""

from __future__ import annotations

import csv
import gzip
import io
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

LANDING = Path(__file__).resolve().parent / "landing"
NOTES = [
    "",
    "Please ring twice",
    'Gift wrap, "urgent"',
    "Leave at the door, next to the plants",
    "Zustellung bitte nach 18 Uhr – danke!",
    "Deux cafés, s'il vous plaît",
    "Line one\nline two",
    "  leading and trailing spaces  ",
]


def orders(day: int, rng: random.Random, ids: range, bad_rows: int) -> list[list[str]]:
    rows = []
    for order_id in ids:
        ordered = datetime(2026, 11, day, 8, 0) + timedelta(minutes=rng.randrange(600))
        note = rng.choice(NOTES)
        rows.append(
            [
                str(order_id),
                str(rng.randrange(1, 200)),
                rng.choice(["new", "paid", "shipped", "cancelled"]),
                f"{rng.randrange(100, 50_000) / 100:.2f}",
                rng.choice(["EUR", "EUR", "USD", "GBP"]),
                ordered.strftime("%Y-%m-%d %H:%M:%S"),
                note if note else "N/A",
                (ordered + timedelta(hours=day)).strftime("%Y-%m-%dT%H:%M:%S+01:00"),
            ]
        )
    for index in range(bad_rows):  # dirty rows the contract quarantines, with reasons
        rows[rng.randrange(len(rows))][3 if index % 2 else 2] = "-12.00" if index % 2 else "lost"
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]], gzipped: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)


def main() -> None:
    rng = random.Random(20261121)
    header = [
        "order_id",
        "customer_id",
        "status",
        "amount",
        "currency",
        "ordered_at",
        "note",
        "updated_at",
    ]
    write_csv(
        LANDING / "orders/orders_2026-11-20.csv", header, orders(20, rng, range(1000, 1200), 2)
    )
    # The next day changes 50 orders and brings 150 new ones, gzipped.
    write_csv(
        LANDING / "orders/orders_2026-11-21.csv.gz",
        header,
        orders(21, rng, range(1150, 1350), 1),
        gzipped=True,
    )
    customers = pl.DataFrame(
        {
            "customer_id": list(range(1, 200)),
            "name": [f"Customer {i:03d}" + (" Ünal" if i % 17 == 0 else "") for i in range(1, 200)],
            "email": [f"customer{i}@example.com" for i in range(1, 200)],
            "country": [rng.choice(["DE", "FR", "NL", "US"]) for _ in range(1, 200)],
            "signup_date": [
                date(2024, 1, 1) + timedelta(days=rng.randrange(700)) for _ in range(1, 200)
            ],
            "is_active": [rng.random() > 0.2 for _ in range(1, 200)],
            "lifetime_value": [round(rng.random() * 5000, 2) for _ in range(1, 200)],
            "crm_internal_flag": [rng.random() > 0.5 for _ in range(1, 200)],  # tolerated drift
        }
    )
    path = LANDING / "customers/customers_2026-11.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    customers.write_parquet(path)
    for hour in (9, 10):
        rows = []
        for _ in range(100):
            when = datetime(2026, 11, 21, hour, tzinfo=UTC) + timedelta(seconds=rng.randrange(3600))
            kind = rng.choice(["page_view", "page_view", "add_to_cart", "checkout"])
            rows.append(
                [
                    str(uuid.UUID(int=rng.getrandbits(128))),
                    when.isoformat(),
                    str(rng.randrange(1, 200)) if rng.random() > 0.3 else "",
                    kind,
                    f'{{"path": "/p/{rng.randrange(50)}", "ms": {rng.randrange(20, 900)}}}',
                ]
            )
        write_csv(
            LANDING / f"events/2026/11/21/events {hour:02d}h.csv",
            ["event_id", "occurred_at", "customer_id", "kind", "payload"],
            rows,
        )


if __name__ == "__main__":
    main()
