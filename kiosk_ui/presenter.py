"""Refusals and results in plain words, English and Spanish: the one place that turns a code into
a sentence, so a refusal reads the same in the station API's JSON and on the kiosk screen.

Sentences speak to the person at the door (a tired parent, a grandparent picking up): what
happened and what to do next, never how the system works inside.
"""

from __future__ import annotations

from string import Formatter
from typing import Literal

from edge.disk import StorageFault
from edge.policy import RefusalReason

Lang = Literal["en", "es"]
LANGS: tuple[Lang, ...] = ("en", "es")

# reason -> (sentence, a more precise sentence or None). The precise one is used when the context
# has everything it names: {child} (a child's name), {seconds} (how long a lockout lasts).
_MESSAGES: dict[Lang, dict[RefusalReason, tuple[str, str | None]]] = {
    "en": {
        RefusalReason.UNKNOWN_PIN: ("That PIN was not recognized. Please try again.", None),
        RefusalReason.AMBIGUOUS_PIN: (
            "This PIN cannot be used because someone else has the same one. Please see the front desk.",
            None,
        ),
        RefusalReason.LOCKED: (
            "Too many wrong PINs. Please wait a moment and try again.",
            "Too many wrong PINs. Please wait {seconds} seconds and try again.",
        ),
        RefusalReason.PIN_ONLY: (
            "Please use your PIN at the kiosk. QR codes and the phone app are for parents only.",
            "Please use your PIN at the kiosk for {child}. QR codes and the phone app are for parents only.",
        ),
        RefusalReason.RESTRICTED: (
            "Please see a staff member.",
            "Please see a staff member about {child}.",
        ),
        RefusalReason.NOT_AUTHORIZED: (
            "You are not on the pickup list for this child. Please see a staff member.",
            "You are not on the pickup list for {child}. Please see a staff member.",
        ),
        RefusalReason.PERSON_INACTIVE: (
            "Your record is not active. Please see the front desk.",
            None,
        ),
        RefusalReason.CHILD_INACTIVE: (
            "This child is not currently enrolled in a classroom. Please see the front desk.",
            "{child} is not currently enrolled in a classroom. Please see the front desk.",
        ),
        RefusalReason.ALREADY_IN: ("This child is already checked in.", "{child} is already checked in."),
        RefusalReason.ALREADY_OUT: ("This child is already checked out.", "{child} is already checked out."),
        RefusalReason.NOT_A_TOKEN: ("That is not a check-in code. Please use your PIN.", None),
        RefusalReason.BAD_SIGNATURE: ("That code is not valid. Please use your PIN.", None),
        RefusalReason.UNKNOWN_KEY: ("That code is not valid here. Please use your PIN.", None),
        RefusalReason.EXPIRED: ("That code has expired. Please show a new one or use your PIN.", None),
        RefusalReason.REPLAYED: ("That code was already used. Please show a new one or use your PIN.", None),
        RefusalReason.REVOKED: ("That badge is no longer valid. Please see the front desk.", None),
        RefusalReason.BAD_TICKET: ("That took too long. Please enter your PIN again.", None),
    },
    "es": {
        RefusalReason.UNKNOWN_PIN: ("No se reconoció ese PIN. Inténtelo de nuevo.", None),
        RefusalReason.AMBIGUOUS_PIN: (
            "Este PIN no se puede usar porque otra persona tiene el mismo. Pase por la recepción.",
            None,
        ),
        RefusalReason.LOCKED: (
            "Demasiados PIN incorrectos. Espere un momento e inténtelo de nuevo.",
            "Demasiados PIN incorrectos. Espere {seconds} segundos e inténtelo de nuevo.",
        ),
        RefusalReason.PIN_ONLY: (
            "Use su PIN en el quiosco. Los códigos QR y la aplicación son solo para los padres.",
            "Use su PIN en el quiosco para {child}. Los códigos QR y la aplicación son solo para los padres.",
        ),
        RefusalReason.RESTRICTED: (
            "Hable con un miembro del personal.",
            "Hable con un miembro del personal sobre {child}.",
        ),
        RefusalReason.NOT_AUTHORIZED: (
            "Usted no está en la lista para recoger a este niño. Hable con un miembro del personal.",
            "Usted no está en la lista para recoger a {child}. Hable con un miembro del personal.",
        ),
        RefusalReason.PERSON_INACTIVE: ("Su registro no está activo. Pase por la recepción.", None),
        RefusalReason.CHILD_INACTIVE: (
            "Este niño no está inscrito en un salón. Pase por la recepción.",
            "{child} no está inscrito en un salón. Pase por la recepción.",
        ),
        RefusalReason.ALREADY_IN: (
            "Este niño ya tiene registrada la entrada.",
            "{child} ya tiene registrada la entrada.",
        ),
        RefusalReason.ALREADY_OUT: (
            "Este niño ya tiene registrada la salida.",
            "{child} ya tiene registrada la salida.",
        ),
        RefusalReason.NOT_A_TOKEN: ("Ese no es un código de entrada. Use su PIN.", None),
        RefusalReason.BAD_SIGNATURE: ("Ese código no es válido. Use su PIN.", None),
        RefusalReason.UNKNOWN_KEY: ("Ese código no es válido aquí. Use su PIN.", None),
        RefusalReason.EXPIRED: ("Ese código ha vencido. Muestre uno nuevo o use su PIN.", None),
        RefusalReason.REPLAYED: ("Ese código ya se usó. Muestre uno nuevo o use su PIN.", None),
        RefusalReason.REVOKED: ("Esa credencial ya no es válida. Pase por la recepción.", None),
        RefusalReason.BAD_TICKET: ("Pasó demasiado tiempo. Ingrese su PIN otra vez.", None),
    },
}

# The hub failed to save (503, docs/door.md "Faults"): not the person's doing, so say what to do.
_FAULTS: dict[Lang, dict[StorageFault, str]] = {
    "en": {
        StorageFault.FULL: "The device's storage is full — check-ins can't be saved; tell staff.",
        StorageFault.READ_ONLY: "The device can't save right now — check-ins can't be saved; tell staff.",
    },
    "es": {
        StorageFault.FULL: (
            "El almacenamiento del equipo está lleno: no se pueden guardar las entradas; avise al personal."
        ),
        StorageFault.READ_ONLY: (
            "El equipo no puede guardar ahora: no se pueden guardar las entradas; avise al personal."
        ),
    },
}


def answer_language(accept_language: str | None) -> str:
    """Spanish when the caller (a kiosk screen, a phone) asks for it first; English otherwise."""
    first = (accept_language or "")[:200].split(",")[0].strip().lower()
    return "es" if first.startswith("es") else "en"


def fault_message(fault: StorageFault, lang: str = "en") -> str:
    """The sentence for a storage fault (the hub could not save), English unless ``es``."""
    return _FAULTS["es" if lang == "es" else "en"][fault]


_FALLBACK: dict[Lang, str] = {
    "en": "That did not work. Please see a staff member.",
    "es": "No se pudo completar. Hable con un miembro del personal.",
}


def message(reason: RefusalReason | str, lang: str = "en", **context: object) -> str:
    """The sentence for a refusal. ``context``: ``child`` (a name), ``seconds`` (a lockout's wait).

    An unknown language falls back to English, an unknown code to a plain "see a staff member"."""
    language: Lang = "es" if lang == "es" else "en"
    try:
        generic, precise = _MESSAGES[language][RefusalReason(reason)]
    except ValueError:
        return _FALLBACK[language]
    if precise is not None:
        names = {name for _text, name, _spec, _conv in Formatter().parse(precise) if name}
        if all(context.get(name) not in (None, "") for name in names):
            return precise.format(**{name: context[name] for name in names})
    return generic
