"""The loss study: training runs of every focal-loss form side by side (`comparison`) and the
forms' floating-point behaviour over the whole logit range (`numerics`)."""
