"""Methods the catalogue links to that refimpl does not implement yet.

The catalogue validator reports a link to one of these as a warning ("planned") and a link to a name that is
neither registered nor planned as an error. Implementing a method means registering it and deleting it here;
a test keeps the two sets disjoint.
"""

# Every method the catalogue links to is registered; a new paper whose method is still to come goes here.
PLANNED_METHODS: frozenset[str] = frozenset()


def planned_methods() -> frozenset[str]:
    return PLANNED_METHODS
