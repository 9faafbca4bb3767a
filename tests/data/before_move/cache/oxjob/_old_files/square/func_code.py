# first line: 17
def square(x):
    """The cached function of the fixture's ``Memory`` (its code is part of the key)."""
    return x * x
