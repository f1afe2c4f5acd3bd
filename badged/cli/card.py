"""`badged card …` and `badged reader …`: read a card, serve a simulated one, list readers."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from ..cards.pcsc import CardConnection, PcscError, list_readers, match_readers
from ..cards.profile import CardRead, CardReadError, ProfileReader
from ..cards.reading import read_one
from ..cards.vpcd import VPCD_PORT
from ..config.errors import ConfigError
from ..config.tree import load_card_profile
from ..demo.pcscd_sandbox import PORT_FILE
from ..enrolment.card_records import card_records, set_card_state
from ..enrolment.lifecycle import STATES
from . import Context, fail, main, pass_ctx, user_errors


@main.group()
def card() -> None:
    """Read cards, and simulate one on vpcd."""


@card.command("read")
@click.option("--reader", metavar="R", help="Reader name or glob (default: any reader).")
@click.option("--profile", metavar="P",
              help="Card profile: an id of the tree or a path to a profile file "
                   "(default: the host's school's profile).")
@click.option("--timeout", type=float, default=30.0, show_default=True, metavar="S",
              help="Seconds to wait for a card.")
@click.option("--json", "as_json", is_flag=True, help="Print the CardRead as JSON.")
@pass_ctx
@user_errors
def card_read(ctx: Context, reader: str | None, profile: str | None, timeout: float,
              as_json: bool) -> None:
    """Wait for a card, read it with a card profile and print what it holds.

    A reader pattern matching no reader fails at once, listing the readers present.

    \b
    Examples:
      badged card read
      badged card read --reader 'ACS ACR1252 * PICC 0' --json
      badged card read --profile demo/profiles/diversified.yaml --timeout 10
    """
    if profile is None:
        site = ctx.host.load_site()
        loaded, base = site.card_profile, site.tree
    else:
        tree = None
        if "/" not in profile and not profile.endswith((".yaml", ".yml")):
            tree = ctx.host.tree
        loaded, base = load_card_profile(tree, profile)
    profile_reader = ProfileReader(loaded, base)
    try:
        result = read_one(profile_reader, reader, timeout)
    except (CardReadError, PcscError) as exc:
        fail(f"error: {exc}")
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else _text(result))


def _text(r: CardRead) -> str:
    lines = [f"reader        {r.reader}", f"ATR           {r.atr}",
             f"CSN           {r.csn} (reversed {r.csn_reversed})",
             f"CSN decimal   {r.csn_decimal} (reversed {r.csn_reversed_decimal})"]
    if r.random_uid:
        lines.append("random UID    yes")
    lines += [f"CROUS number  {r.crous_number or '-'}", f"ESCN          {r.escn or '-'}"]
    lines += [f"file {f.aid}/{f.id:<3} {f.meaning}: {f.value}" for f in r.files
              if f.meaning == "raw"]
    if r.desfire:
        hw = r.desfire["hardware"]
        lines.append(f"DESFire       {hw['generation']} {hw['version']}, "
                     f"{hw['storage_bytes']} bytes")
    lines.append(f"read in       {r.apdus} APDUs, {r.duration_ms:.1f} ms")
    return "\n".join(lines)


@card.command("simulate")
@click.option("--card", "card_file", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Card file (YAML: uid, applications, keys, files).")
@click.option("--vpcd-port", type=int, metavar="N",
              help="vpcd's TCP port of slot 0 (default: the demo's pcscd of the host file's "
                   f"state folder if it runs, else vpcd's default {VPCD_PORT}).")
@click.option("--slot", type=click.IntRange(0, 1), default=0, show_default=True,
              help="Reader slot: 0 ('… 00 00', the demo's enrolment desk) or 1 ('… 00 01').")
@click.option("--vpcd-host", default="127.0.0.1", show_default=True, metavar="HOST")
@pass_ctx
def card_simulate(ctx: Context, card_file: Path, vpcd_port: int | None, slot: int,
                  vpcd_host: str) -> None:
    """Serve a simulated DESFire EV1 card on vpcd until interrupted.

    \b
    Examples (with the demo running, scripts/demo.sh):
      BADGED_HOST_CONFIG=demo/badged.yaml badged card simulate --card demo/cards/student-card.yaml
      badged card simulate --card my-card.yaml --vpcd-port 35963 --slot 1
    """
    from ..cards.simulator import CardFileError, SimulatedDesfire
    from ..cards.vpcd import VpcdCard

    try:
        engine = SimulatedDesfire.from_file(card_file)
    except CardFileError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"error: {card_file}: {exc.strerror}")
    port, source = _vpcd_port(ctx, vpcd_port)
    card = VpcdCard(engine, host=vpcd_host, port=port + slot)
    try:
        card.insert(timeout=2.0)
    except ConnectionError:
        fail(f"error: no vpcd listening on {vpcd_host}:{port + slot} ({source}, slot {slot}): "
             "start the demo (scripts/demo.sh), or pcscd with vsmartcard-vpcd, or give "
             "--vpcd-port")
    click.echo(f"card {card_file.name} on vpcd {vpcd_host}:{port + slot}", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        card.serve_forever()


def _vpcd_port(ctx: Context, given: int | None) -> tuple[int, str]:
    """The port to use and where it comes from."""
    if given is not None:
        return given, "--vpcd-port"
    try:
        port_file = ctx.host.state_dir / "pcscd" / PORT_FILE
    except ConfigError:
        port_file = None
    if port_file is not None and port_file.is_file():
        try:
            return int(port_file.read_text().strip()), f"the demo's pcscd, {port_file}"
        except ValueError:
            pass
    return VPCD_PORT, "vpcd's default port"


@main.group()
def reader() -> None:
    """PC/SC readers."""


@reader.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON: [{name, role, card, atr}].")
@pass_ctx
@user_errors
def reader_list(ctx: Context, as_json: bool) -> None:
    """List the readers pcscd sees, with their role in this school and their card.

    \b
    Example:
      badged reader list          # the exact names to write in the school's readers:
    """
    try:
        names = list_readers()
    except PcscError as exc:
        fail(f"error: {exc}")
    roles = _roles(ctx, names)
    rows = []
    for name in names:
        atr = None
        try:
            with CardConnection(name) as conn:
                atr = conn.atr.hex().upper()
        except PcscError:
            pass  # no card, or a card busy elsewhere: the reader is listed all the same
        rows.append({"name": name, "role": roles.get(name), "card": atr is not None,
                     "atr": atr})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        card_text = f"card {row['atr']}" if row["card"] else "no card"
        click.echo(f"{row['name']}\t{row['role'] or '-'}\t{card_text}")


def _roles(ctx: Context, names: list[str]) -> dict[str, str]:
    """Each reader's role from the host's school, when a host file is there to say."""
    try:
        rules = ctx.host.load_site().school.readers
    except ConfigError:
        return {}
    roles: dict[str, str] = {}
    for rule in rules:
        for name in match_readers(rule.name, names):
            roles.setdefault(name, rule.role.value)
    return roles


@card.command("set-state")
@click.argument("csn")
@click.argument("state", type=click.Choice(list(STATES)))
@click.option("--reason", metavar="TEXT", help="Why (recorded with the change).")
@pass_ctx
@user_errors
def card_set_state(ctx: Context, csn: str, state: str, reason: str | None) -> None:
    """Change a card's state (lost, stolen, broken, expired, destroyed, or active again).

    The change is recorded (who, when, why) and queued for the CROUS.

    \b
    Examples:
      badged card set-state 04112233445566 lost --reason "reported at the desk"
      badged card set-state 04112233445566 active --reason "found again"
    """
    updated = set_card_state(ctx.host, csn, state, reason)
    code = updated.crous_cancel_reason
    queued = f"CROUS cancel reason {code}" if code else "CROUS revalidation"
    click.echo(f"card {updated.csn} is now {updated.state} ({queued} queued)")


@card.command("show")
@click.argument("csn", required=False)
@click.option("--person", "person_id", metavar="ID", help="The cards of this person.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def card_show(ctx: Context, csn: str | None, person_id: str | None, as_json: bool) -> None:
    """Show a card (or a person's cards): holder, CROUS number, state and its history.

    \b
    Examples:
      badged card show 04112233445566
      badged card show --person 22500101 --json
    """
    if (csn is None) == (person_id is None):
        raise click.UsageError("give a CSN or --person ID")
    data = card_records(ctx.host, csn=csn, person_id=person_id)
    if not data:
        fail(f"error: no card {'for ' + str(person_id) if person_id else str(csn).upper()}")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for c in data:
        click.echo(f"card {c['csn']}: {c['state']}, holder {c['person_id'] or '-'}, CROUS "
                   f"number {c['crous_number'] or '-'}, enrolled {c['enrolled_at'] or '-'}")
        for h in c["history"]:
            sent = "sent" if h["crous_sent_at"] else "queued"
            click.echo(f"  {h['at']} {h['old_state'] or 'new'} → {h['new_state']} by "
                       f"{h['actor']}{': ' + h['reason'] if h['reason'] else ''} "
                       f"(CROUS {h['crous_reason'] or 'update'} {sent})")
