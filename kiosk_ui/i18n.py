"""The kiosk's words, in English and Spanish.

The page renders in one language and carries both tables (as a JSON data block), so the
language button switches at once, with no round trip to a hub that may be restarting.
Placeholders are ``{name}``-style and filled in by kiosk.js. Refusal sentences come from the
API's ``message`` (asked for in the screen's language); the ``reason.*`` entries, taken from
``kiosk_ui.presenter``, say them again when the language is switched while one is on screen,
and stand in when an answer carries no message at all.
"""

from __future__ import annotations

from typing import Final

from edge.disk import StorageFault
from edge.policy import RefusalReason
from kiosk_ui import presenter

LANGUAGES: Final = ("en", "es")
DEFAULT_LANGUAGE: Final = "en"

_STRINGS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "lang.name": "English",
        "lang.switch": "Español",
        "lang.switch_label": "Cambiar a español",
        "page.title": "Check in and out",
        "pad.title": "Enter your PIN",
        "pad.hint": "Your 4 to 6 digit code",
        "pad.ok": "OK",
        "pad.clear": "Clear",
        "pad.back": "Delete last digit",
        "pad.checking": "Checking…",
        "pad.locked": "Too many wrong PINs. Try again in {seconds} s.",
        "people.hello": "Hi, {name}",
        "people.pick": "Tap a child to add or remove them.",
        "people.mixed": "Check-ins and check-outs are done one at a time.",
        "people.none": "There is no one you can check in or out here. Please see a staff member.",
        "people.cancel": "Cancel",
        "child.in": "Here now",
        "child.out": "Not here",
        "child.will_check_in": "Check in",
        "child.will_check_out": "Check out",
        "child.tap_check_in": "Tap to check in",
        "child.tap_check_out": "Tap to check out",
        "confirm.check_in": "Check in {names}",
        "confirm.check_out": "Check out {names}",
        "confirm.pick_first": "Tap a child first",
        "confirm.sending": "Saving…",
        "staff.in_since": "Clocked in since {time}",
        "staff.in": "Clocked in",
        "staff.out": "Not clocked in",
        "staff.clock_in": "Clock in",
        "staff.clock_out": "Clock out",
        "done.check_in": "{name} checked in at {time}",
        "done.check_out": "{name} checked out at {time}",
        "done.clock_in": "{name} clocked in at {time}",
        "done.clock_out": "{name} clocked out at {time}",
        "done.thanks": "Thank you!",
        "done.back": "Done",
        "live.qr": "With a QR code",
        "live.geofence": "From the phone app",
        "live.staff": "By a staff member",
        "live.pin": "With a PIN",
        "refused.title": "Sorry",
        "refused.ok": "OK",
        "status.offline": "Offline — check-ins are saved",
        "status.reconnecting": "Reconnecting…",
        "error.hub": "The check-in system is not answering. Please try again, or see a staff member.",
        "error.generic": "Something went wrong. Please see a staff member.",
        "error.unpaired": "This screen is not set up for this door yet. Please see a staff member.",
    },
    "es": {
        "lang.name": "Español",
        "lang.switch": "English",
        "lang.switch_label": "Switch to English",
        "page.title": "Entrada y salida",
        "pad.title": "Ingrese su PIN",
        "pad.hint": "Su código de 4 a 6 dígitos",
        "pad.ok": "OK",
        "pad.clear": "Borrar",
        "pad.back": "Borrar el último dígito",
        "pad.checking": "Verificando…",
        "pad.locked": "Demasiados PIN incorrectos. Intente de nuevo en {seconds} s.",
        "people.hello": "Hola, {name}",
        "people.pick": "Toque a un niño para incluirlo o quitarlo.",
        "people.mixed": "Las entradas y las salidas se registran por separado.",
        "people.none": "No hay nadie que usted pueda registrar aquí. Hable con un miembro del personal.",
        "people.cancel": "Cancelar",
        "child.in": "Está aquí",
        "child.out": "No está aquí",
        "child.will_check_in": "Entrada",
        "child.will_check_out": "Salida",
        "child.tap_check_in": "Toque para la entrada",
        "child.tap_check_out": "Toque para la salida",
        "confirm.check_in": "Registrar entrada de {names}",
        "confirm.check_out": "Registrar salida de {names}",
        "confirm.pick_first": "Primero toque a un niño",
        "confirm.sending": "Guardando…",
        "staff.in_since": "Con entrada desde las {time}",
        "staff.in": "Con entrada marcada",
        "staff.out": "Sin entrada marcada",
        "staff.clock_in": "Marcar entrada",
        "staff.clock_out": "Marcar salida",
        "done.check_in": "Entrada de {name} a las {time}",
        "done.check_out": "Salida de {name} a las {time}",
        "done.clock_in": "{name} marcó su entrada a las {time}",
        "done.clock_out": "{name} marcó su salida a las {time}",
        "done.thanks": "¡Gracias!",
        "done.back": "Listo",
        "live.qr": "Con un código QR",
        "live.geofence": "Desde la aplicación del teléfono",
        "live.staff": "Por un miembro del personal",
        "live.pin": "Con un PIN",
        "refused.title": "Lo sentimos",
        "refused.ok": "OK",
        "status.offline": "Sin conexión: los registros se guardan",
        "status.reconnecting": "Reconectando…",
        "error.hub": "El sistema de registro no responde. Intente de nuevo o hable con un miembro del personal.",
        "error.generic": "Algo salió mal. Hable con un miembro del personal.",
        "error.unpaired": "Esta pantalla aún no está configurada para esta puerta. Hable con un miembro del personal.",
    },
}


def _with_refusals(lang: str, table: dict[str, str]) -> dict[str, str]:
    # The presenter is the one place a refusal becomes a sentence: the page borrows its
    # sentences rather than keeping a second set that could drift.
    refusals = {f"reason.{reason.value}": presenter.message(reason, lang) for reason in RefusalReason}
    faults = {f"reason.{fault.value}": presenter.fault_message(fault, lang) for fault in StorageFault}
    return {**table, **refusals, **faults}


STRINGS: Final[dict[str, dict[str, str]]] = {lang: _with_refusals(lang, table) for lang, table in _STRINGS.items()}


def pick_language(requested: str | None) -> str:
    """``?lang=`` as given, or the default for anything we do not speak."""
    lang = (requested or "").strip().lower()[:2]
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


def strings(lang: str) -> dict[str, str]:
    return STRINGS[pick_language(lang)]
