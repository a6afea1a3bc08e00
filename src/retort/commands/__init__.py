"""The subcommands of ``retort``, one module each: ``add_parser(sub)`` declares the command's parser from
the options declared in ``retort.options`` (and sets ``run`` as its default), ``run(args)`` does the work
and returns the exit code. The work itself is in plain functions with keyword arguments (``train``,
``evaluate``, ``export``, ``bench``) that the Python API (``retort.api``) calls too.
"""
