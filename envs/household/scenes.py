"""What a household is made of: receptacle and object types, their affordances, and the four kinds of room.

The vocabulary and the tables follow ALFWorld's (``alfworld/gen/constants.py``: ``VAL_RECEPTACLE_OBJECTS`` is our
:data:`CAN_CONTAIN`, ``VAL_ACTION_OBJECTS`` our :data:`HEATABLE`, :data:`COOLABLE`, :data:`CLEANABLE`,
``OPENABLE_CLASS_LIST`` our :data:`OPENABLE`), restricted to the objects listed here and without sliced objects or
movable receptacles. Names are ALFWorld's: one lowercase word per type ("sinkbasin", "butterknife").
"""

from __future__ import annotations

from dataclasses import dataclass

#: Receptacles that start closed and must be opened to take from or put into.
OPENABLE = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})

#: Toggleable objects: they stand at a receptacle and are switched with "use"; they cannot be picked up.
LAMPS = ("desklamp", "floorlamp")
#: Where each kind of lamp stands.
LAMP_STANDS: dict[str, tuple[str, ...]] = {
    "desklamp": ("desk", "dresser", "sidetable"),
    "floorlamp": ("armchair", "dresser", "sidetable", "sofa"),
}

HEATABLE = frozenset({"apple", "bread", "cup", "egg", "mug", "plate", "potato", "tomato"})
COOLABLE = frozenset(
    {"apple", "bowl", "bread", "cup", "egg", "lettuce", "mug", "pan", "plate", "pot", "potato", "tomato", "winebottle"}
)
CLEANABLE = frozenset(
    {
        *("apple", "bowl", "butterknife", "cloth", "cup", "dishsponge", "egg", "fork", "kettle", "knife", "ladle"),
        *("lettuce", "mug", "pan", "plate", "pot", "potato", "soapbar", "spatula", "spoon", "tomato"),
    }
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TABLETOP = _words(
    "alarmclock apple baseballbat basketball book bowl box bread butterknife candle cd cellphone cloth creditcard "
    "cup dishsponge egg fork handtowel kettle keychain knife ladle laptop lettuce mug newspaper pan pen pencil "
    "peppershaker plate pot potato remotecontrol saltshaker soapbar soapbottle spatula spoon spraybottle statue "
    "tennisracket tissuebox toiletpaper tomato vase watch winebottle"
)
_DESK = _words(
    "alarmclock basketball book bowl box candle cd cellphone cloth creditcard cup keychain laptop mug newspaper pen "
    "pencil plate remotecontrol soapbottle spraybottle statue tennisracket tissuebox toiletpaper vase watch winebottle"
)
_SEAT = _words("basketball book box cellphone cloth creditcard keychain laptop newspaper pillow remotecontrol")

#: Receptacle type -> object types that may be put in/on it (ALFWorld's ``canContain``).
CAN_CONTAIN: dict[str, frozenset[str]] = {
    "armchair": _SEAT,
    "bathtubbasin": _words("cloth dishsponge handtowel soapbar"),
    "bed": _words("baseballbat basketball book cellphone laptop newspaper pillow tennisracket"),
    "cabinet": _words(
        "book bowl box candle cd cloth cup dishsponge handtowel kettle ladle mug newspaper pan peppershaker plate "
        "pot saltshaker soapbar soapbottle spraybottle tissuebox toiletpaper vase winebottle"
    ),
    "coffeemachine": _words("mug"),
    "coffeetable": _TABLETOP,
    "countertop": _TABLETOP,
    "desk": _DESK,
    "diningtable": _TABLETOP,
    "drawer": _words(
        "book butterknife candle cd cellphone cloth creditcard dishsponge fork handtowel keychain knife ladle "
        "newspaper pen pencil peppershaker remotecontrol saltshaker soapbar soapbottle spatula spoon spraybottle "
        "tissuebox toiletpaper watch"
    ),
    "dresser": _DESK - {"soapbottle"},
    "fridge": _words("apple bowl bread cup egg lettuce mug pan plate pot potato tomato winebottle"),
    "garbagecan": _words(
        "apple bread cd cloth dishsponge egg handtowel lettuce newspaper pen pencil potato soapbar soapbottle "
        "spraybottle tissuebox toiletpaper tomato winebottle"
    ),
    "handtowelholder": _words("handtowel"),
    "laundryhamper": _words("cloth"),
    "microwave": _words("apple bowl bread cup egg mug plate potato tomato"),
    "ottoman": _SEAT,
    "safe": _words("cd cellphone creditcard keychain statue vase watch"),
    "shelf": _words(
        "alarmclock book bowl box candle cd cellphone cloth creditcard cup dishsponge handtowel kettle keychain mug "
        "newspaper pen pencil peppershaker plate pot remotecontrol saltshaker soapbar soapbottle spraybottle statue "
        "tissuebox toiletpaper vase watch winebottle"
    ),
    "sidetable": _TABLETOP,
    "sinkbasin": _words(
        "apple bowl butterknife cloth cup dishsponge egg fork handtowel kettle knife ladle lettuce mug pan plate pot "
        "potato soapbar spatula spoon tomato"
    ),
    "sofa": _SEAT,
    "stoveburner": _words("kettle pan pot"),
    "toaster": frozenset(),  # ALFWorld's toaster only takes bread slices, which this world has no knife for
    "toilet": _words(
        "candle cloth dishsponge handtowel newspaper soapbar soapbottle spraybottle tissuebox toiletpaper"
    ),
    "toiletpaperhanger": _words("toiletpaper"),
    "towelholder": _words("towel"),
    "tvstand": _words("tissuebox"),
}


@dataclass(frozen=True)
class RoomKind:
    """A kind of room: how many receptacles of each type it may have, and which objects lie about in it."""

    name: str
    receptacles: dict[str, tuple[int, int]]  # receptacle type -> (fewest, most)
    objects: frozenset[str]


ROOMS: dict[str, RoomKind] = {
    "kitchen": RoomKind(
        "kitchen",
        {
            "cabinet": (1, 12),
            "coffeemachine": (0, 1),
            "countertop": (1, 3),
            "diningtable": (0, 1),
            "drawer": (0, 8),
            "fridge": (1, 1),
            "garbagecan": (0, 1),
            "microwave": (1, 1),
            "shelf": (0, 3),
            "sidetable": (0, 1),
            "sinkbasin": (1, 1),
            "stoveburner": (0, 4),
            "toaster": (0, 1),
        },
        _words(
            "apple bowl bread butterknife cup dishsponge egg fork kettle knife ladle lettuce mug pan peppershaker "
            "plate pot potato saltshaker soapbottle spatula spoon tomato winebottle"
        ),
    ),
    "livingroom": RoomKind(
        "livingroom",
        {
            "armchair": (0, 2),
            "cabinet": (0, 4),
            "coffeetable": (1, 1),
            "diningtable": (0, 1),
            "drawer": (0, 6),
            "dresser": (0, 1),
            "garbagecan": (0, 1),
            "ottoman": (0, 1),
            "safe": (0, 1),
            "shelf": (0, 8),
            "sidetable": (1, 2),
            "sofa": (1, 1),
            "tvstand": (0, 1),
        },
        _words(
            "book bowl box cellphone creditcard keychain laptop newspaper pillow plate remotecontrol statue "
            "tissuebox vase watch"
        ),
    ),
    "bedroom": RoomKind(
        "bedroom",
        {
            "armchair": (0, 1),
            "bed": (1, 1),
            "cabinet": (0, 3),
            "desk": (0, 1),
            "drawer": (1, 10),
            "dresser": (1, 1),
            "garbagecan": (0, 1),
            "laundryhamper": (0, 1),
            "safe": (0, 1),
            "shelf": (0, 8),
            "sidetable": (0, 2),
        },
        _words(
            "alarmclock baseballbat basketball book bowl cd cellphone cloth creditcard keychain laptop mug pen "
            "pencil pillow tennisracket"
        ),
    ),
    "bathroom": RoomKind(
        "bathroom",
        {
            "bathtubbasin": (0, 1),
            "cabinet": (0, 8),
            "countertop": (1, 1),
            "drawer": (0, 8),
            "dresser": (0, 1),
            "garbagecan": (0, 1),
            "handtowelholder": (0, 1),
            "shelf": (0, 4),
            "sinkbasin": (1, 2),
            "toilet": (1, 1),
            "toiletpaperhanger": (0, 1),
            "towelholder": (1, 1),
        },
        _words("candle cloth dishsponge handtowel soapbar soapbottle spraybottle tissuebox toiletpaper towel"),
    ),
}
