"""atalp-keras: Attention and Adversarial Logit Pairing for Keras 3 / TensorFlow."""

from setuptools import find_packages, setup

# Versions measured to work together on CPU (see docs and ENVIRONMENT notes).
# GPU machines: install with the "gpu" extra instead of the CPU wheel, e.g.
#   pip install --no-deps -e . && pip install "tensorflow[and-cuda]==2.21.0" ...
REQUIRED = [
    "tensorflow-cpu==2.21.0",
    "keras==3.15.1",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "scikit-learn==1.9.1",
    "tensorflow-datasets==4.9.10",
    "importlib_resources==7.1.0",  # tfds 4.9.10 needs it and does not declare it
    "matplotlib==3.11.2",
    "pillow==13.0.0",
    "tensorboard==2.21.0",  # TensorBoard logs of train.py (not pulled in by tensorflow-cpu)
]

setup(
    name="atalp-keras",
    version="0.1.0",
    description="Adversarial training with Attention and Adversarial Logit Pairing "
                "(AT + ALP) for Keras 3, with honest robustness evaluation.",
    # configs/ is installed as atalp_keras/configs/, where the commands find
    # --flagfile=configs/<name>.flags outside a checkout (cli/flagfiles.py).
    packages=find_packages(include=["atalp_keras", "atalp_keras.*"]) + ["atalp_keras.configs"],
    package_dir={"atalp_keras.configs": "configs"},
    # The reproduction report's prose lives in Markdown templates beside its code.
    package_data={"atalp_keras.reproduction": ["templates/*.md"],
                  "atalp_keras.configs": ["*.flags"]},
    python_requires=">=3.10",
    install_requires=REQUIRED,
    entry_points={
        "console_scripts": [
            "atalp-train=atalp_keras.cli.train:main",
            "atalp-evaluate=atalp_keras.cli.evaluate:main",
            "atalp-analyze=atalp_keras.cli.analyze:main",
        ],
    },
    extras_require={
        # pytest-xdist: .ci/run spreads the suite over two worker processes.
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0"],
        # Peers for the cross-check and speed benchmarks in bench/ (not needed to use the package).
        # KERAS_BACKEND=jax (issue 23): the CPU wheels measured with Keras 3.15.1 on
        # Python 3.11; on a GPU machine install JAX's CUDA build instead.
        "jax": ["jax==0.10.2", "jaxlib==0.10.2"],
        "bench": ["adversarial-robustness-toolbox==1.20.1", "multiprocess"],
    },
)
