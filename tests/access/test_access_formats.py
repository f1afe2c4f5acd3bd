"""The renderers, byte for byte: TIL, Synchronic, P2S and generic layouts; the CSN forms;
who is valid and who is blocked; an unencodable name."""

from __future__ import annotations

from datetime import date

import pytest

from badged.access import formats
from badged.access.population import DoorCard, csn_form, door_cards
from badged.config.model import AccessFormat, Column, CsnForm, Layout, LayoutField
from badged.store.access import CARD_COLUMNS

TODAY = date(2026, 11, 3)


def card(csn: str = "04112233445566", *, valid: bool = True, state: str = "active",
         person: str = "112340000987", enrolled: str = "2014-01-01T08:00:00+00:00",
         last: str = "DALTON", first: str = "JOE", birth: date | None = date(1987, 12, 31),
         until: date = date(2037, 12, 31)) -> DoorCard:
    return DoorCard(csn=csn, state=state, valid=valid, person_id=person, last_name=last,
                    first_name=first, birth_date=birth, email="joe@example.org", ine=None,
                    category="student", crous_number=249760531028417,
                    valid_from=date.fromisoformat(enrolled[:10]), valid_until=until,
                    changed_on=date(2026, 10, 5), enrolled_at=enrolled)


def spec(fmt: AccessFormat, **kw) -> formats.Spec:
    return formats.Spec(format=fmt, school_name="Université de Ville", **kw)


def render(s: formats.Spec, cards: list[DoorCard]) -> bytes:
    [file] = formats.files(s, formats.lines(s, cards), file_name="x.csv", epoch_ms=1)
    return file.content


@pytest.mark.parametrize("form, text", [
    (CsnForm.HEX, "04112233445566"),
    (CsnForm.REVERSED_HEX, "66554433221104"),
    (CsnForm.DECIMAL, "1144738493519206"),
    (CsnForm.REVERSED_DECIMAL, "28804199028494596"),
])
def test_csn_forms(form: CsnForm, text: str) -> None:
    assert csn_form("04112233445566", form) == text


def test_csn_forms_of_a_four_byte_uid() -> None:
    assert csn_form("08A1B2C3", CsnForm.REVERSED_HEX) == "C3B2A108"
    assert csn_form("08A1B2C3", CsnForm.DECIMAL) == str(0x08A1B2C3)
    assert csn_form("08A1B2C3", CsnForm.REVERSED_DECIMAL) == str(0xC3B2A108)


def test_til() -> None:
    cards = [card(), card("04AABBCCDDEEFF", valid=False, state="lost", person="2",
                          last="MARTIN", first="Éloïse", birth=None)]
    assert render(spec(AccessFormat.TIL, csn=CsnForm.DECIMAL), cards) == (
        "112340000987;DALTON;JOE;1144738493519206;01/01/2014;31/12/2037;1;31/12/1987;"
        "Université de Ville;A\r\n"
        "2;MARTIN;Éloïse;1313623479545599;01/01/2014;31/12/2037;0;05/10/2026;"
        "Université de Ville;A\r\n").encode("iso-8859-1")


def test_synchronic_one_card_per_person_the_latest_and_dates_capped() -> None:
    old = card("04000000000001", enrolled="2013-09-01T08:00:00+00:00", valid=False,
               state="lost")
    new = card("04000000000002", enrolled="2014-01-01T08:00:00+00:00",
               until=date(2042, 6, 30))
    other = card("04000000000003", person="2", valid=False, state="expired",
                 until=date(2025, 6, 30))
    assert render(spec(AccessFormat.SYNCHRONIC), [old, new, other]) == (
        "112340000987;DALTON;JOE;04000000000002;20140101;20371231;NON;31/12/1987;"
        "Université de Ville\r\n"
        "2;DALTON;JOE;04000000000003;20140101;20250630;OUI;31/12/1987;"
        "Université de Ville\r\n").encode("iso-8859-1")


def test_p2s_split_into_numbered_files() -> None:
    s = spec(AccessFormat.P2S, csn=CsnForm.HEX, max_lines=2)
    cards = [card(f"0400000000000{i}", person=f"p{i}", valid=i != 2) for i in range(1, 6)]
    files = formats.files(s, formats.lines(s, cards), file_name="cartes.csv",
                          epoch_ms=1793700000123)
    assert [f.name for f in files] == ["1793700000123_1_cartes.csv",
                                       "1793700000123_2_cartes.csv",
                                       "1793700000123_3_cartes.csv"]
    assert files[0].content == (
        "p1;DALTON;JOE;04000000000001;2014/01/01;2037/12/31;0;31/12/1987;Université de Ville\n"
        "p2;DALTON;JOE;04000000000002;2014/01/01;2037/12/31;1;31/12/1987;Université de Ville\n"
    ).encode("iso-8859-1")
    assert files[2].content.count(b"\n") == 1
    assert formats.files(s, [], file_name="cartes.csv", epoch_ms=1) == []


LAYOUT = Layout(
    columns=[Column(header="badge", field=LayoutField.CARD_ID),
             Column(header="nom", field=LayoutField.LAST_NAME),
             Column(header="fin", field=LayoutField.VALID_UNTIL, format="%Y-%m-%d"),
             Column(header="etat", field=LayoutField.STATE),
             Column(header="bloque", field=LayoutField.BLOCKED)],
    separator=",", encoding="utf-8", line_ending="lf", header=True)


def test_generic_layout_with_a_status() -> None:
    s = spec(AccessFormat.GENERIC, csn=CsnForm.REVERSED_HEX, layout=LAYOUT)
    cards = [card(), card("04AABBCCDDEEFF", valid=False, state="stolen", last="O'Brien, Jr")]
    assert render(s, cards) == (
        b"badge,nom,fin,etat,bloque\n"
        b"66554433221104,DALTON,2037-12-31,active,0\n"
        b'FFEEDDCCBBAA04,"O\'Brien, Jr",2037-12-31,stolen,1\n')


def test_generic_layout_without_a_status_leaves_blocked_cards_out() -> None:
    layout = LAYOUT.model_copy(update={"columns": LAYOUT.columns[:3], "header": False})
    s = spec(AccessFormat.GENERIC, layout=layout)
    cards = [card(), card("04AABBCCDDEEFF", valid=False, state="lost")]
    assert render(s, cards) == b"04112233445566,DALTON,2037-12-31\n"


def test_a_name_the_encoding_lacks_names_the_holder() -> None:
    with pytest.raises(formats.RenderError) as err:
        render(spec(AccessFormat.TIL), [card(person="s9", first="Łukasz")])
    assert str(err.value) == "s9: 'Ł' in 'Łukasz' cannot be written in iso-8859-1"


def row(state: str, *, end: str | None = None, leaving: str | None = None,
        source: str = "staff") -> tuple:
    return tuple({"csn": "04112233445566", "state": state, "crous_number": None,
            "enrolled_at": "2026-09-01T22:30:00+00:00", "updated_at": "2026-10-05T09:00:00+00:00",
            "person_id": "p", "last_name": "L", "first_name": "F", "birth_date": None,
            "email": None, "ine": None, "category": "staff", "end_of_rights": end,
            "leaving_since": leaving, "source": source}[column] for column in CARD_COLUMNS)


@pytest.mark.parametrize("values, valid", [
    (row("active"), True),
    (row("active", end="2026-11-03"), True),          # the last day of rights still opens
    (row("active", end="2026-11-02"), False),          # past the end of rights
    (row("active", leaving="2026-10-10"), True),       # absent from the registry: grace
    (row("active", leaving="2026-10-04"), False),      # … 30 days over
    (row("lost"), False), (row("stolen"), False), (row("broken"), False),
    (row("expired"), False), (row("destroyed"), False),
])
def test_who_is_valid(values: tuple, valid: bool) -> None:
    [door] = door_cards([values], TODAY, {"staff": 30})
    assert door.valid is valid
    assert door.valid_from == date(2026, 9, 2)  # 22:30 UTC is the next day in Paris
    assert door.changed_on == date(2026, 10, 5)
