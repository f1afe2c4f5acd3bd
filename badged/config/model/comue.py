"""The files of `comues/`: a COMUE's card purchasing contract."""

from __future__ import annotations

from pydantic import Field

from .card_profile import Technology
from .common import Euros, Id, Model, Name


class Visual(Model):
    """The card visual: a COMUE contract may impose its own."""

    imposed: bool = Field(False, description=(
        "Whether the COMUE contract imposes its own card visual."))
    template: str | None = Field(None, description=(
        "The visual's template (a file or reference the card printer knows)."))


class Comue(Model):
    """A COMUE's card purchasing contract."""

    name: Name = Field(description="The COMUE's name.")
    supplier: Name = Field(description="The card supplier of the purchasing contract.")
    technology: Technology = Field(Technology.DESFIRE_EV1, description=(
        "Card technology bought under the contract."))
    unit_price_eur: Euros = Field(description=(
        "Price of one card under the contract, in euros (e.g. 0.30)."))
    direct_price_eur: Euros | None = Field(None, description=(
        "What one card would cost bought directly, in euros (for `badged report costs`)."))
    visual: Visual = Field(Visual(), description="The card visual, imposed or not.")
    card_profile: Id | None = Field(None, description=(
        "Default card profile (an id of card-profiles/) for the COMUE's schools."))
