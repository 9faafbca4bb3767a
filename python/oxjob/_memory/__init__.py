"""Cache: the private plumbing behind :mod:`oxjob.memory`.

``func_inspect`` reads what identifies a function (where its entries live, its
code and source, as joblib keys them) and ``results`` holds the handles ``Memory`` hands out for
stored and unstored results. The store itself is the public :mod:`oxjob.store`.
"""
