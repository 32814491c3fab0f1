"""The command line's applications (bench, ...): code the library itself never imports."""
