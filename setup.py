"""Only what pyproject.toml cannot say: the course material in lessons/ (top level of the repository,
where teachers and the README link it) ships in the wheel as the package data npunet/course/."""
from setuptools import find_packages, setup

COURSE = ["npunet.course", "npunet.course.exercises", "npunet.course.exercises.solutions"]

setup(packages=find_packages(include=["npunet*"]) + COURSE, package_dir={"npunet.course": "lessons"})
