"""Reproduces the analyses of the AT + ALP paper with one command each.

    python analyze.py attention   --models=runs/digits_standard,runs/digits_at_alp \\
        --num_images=4 --eps=0.2 --out=runs/analysis
    python analyze.py iterations  --model=runs/digits_at_alp \\
        --source_models=runs/digits_at_alp_s1,runs/digits_cnn_standard \\
        --source_labels=gray,black --eps=0.25,0.5 --out=runs/analysis
    python analyze.py landscape   --models=runs/digits_pat,runs/digits_at_alp --out=runs/analysis
    python analyze.py key_regions --models=runs/a,runs/b --images=DIR --masks=DIR \\
        [--eps=0.25] --out=runs/analysis

``attention`` draws Figures 1/4, ``iterations`` Figure 3, ``landscape``
Figure 6 and ``key_regions`` Table 3. Models are run folders, .keras files or
SavedModels; the test images come from the run's model card, ``--seed`` seeds
the attack only. ``python analyze.py --help`` lists every flag; the code is in
``atalp_keras/cli/analyze.py`` (flags) and ``atalp_keras/analysis/``.
Installed, the same command is ``atalp-analyze``.
"""

if __name__ == "__main__":
    from atalp_keras.cli.analyze import main

    main()
