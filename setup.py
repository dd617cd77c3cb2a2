from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="flask-clustershazbot",
    version="0.1.0",
    description="Gossip cluster membership for Flask services, wire-compatible with clustershazbot",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["flask_clustershazbot", "flask_clustershazbot.*"]),
    package_data={"flask_clustershazbot": ["py.typed", "static/*", "templates/*"]},
    python_requires=">=3.10",
    install_requires=[
        "flask>=3.0",
        "requests>=2.31",
        "apscheduler>=3.11,<4",
        "blinker>=1.7",
    ],
    extras_require={
        "orjson": ["orjson>=3.9"],
        "metrics": ["prometheus-client>=0.17"],
        # Master lists (masterlist.py): s3://, redis://, dns://...?resolver=
        "s3": ["boto3>=1.28"],
        "redis": ["redis>=4.2"],
        "dns": ["dnspython>=2.3"],
    },
    entry_points={"console_scripts": ["clustershazbot=flask_clustershazbot.cli:main"]},
    classifiers=[
        "Framework :: Flask",
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Typing :: Typed",
    ],
)
