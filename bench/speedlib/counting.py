"""A classifier wrapper that counts the images it forwards and the images whose
input gradient is taken, in graph and eager mode alike (the counters are
variables updated by the computation itself, so a traced function counts every
call, not every trace)."""


class CountingModel:
    """Callable ``model(x, training=False) -> logits`` around a classifier.

    ``forward_images`` grows by the batch size at every forward;
    ``gradient_images`` by the batch size each time a gradient reaches the
    input. Divide by the number of attacked images for passes per image.
    Other attributes are the wrapped model's.
    """

    def __init__(self, classifier):
        import tensorflow as tf

        self.classifier = classifier
        self._forward = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._gradient = tf.Variable(0, dtype=tf.int64, trainable=False)

        @tf.custom_gradient
        def count_gradient(x):
            def grad(dy):
                n = tf.cast(tf.shape(dy)[0], tf.int64)
                with tf.control_dependencies([self._gradient.assign_add(n)]):
                    return tf.identity(dy)
            return tf.identity(x), grad

        self._count_gradient = count_gradient

    def __call__(self, x, training=False, **kwargs):
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        n = tf.cast(tf.shape(x)[0], tf.int64)
        with tf.control_dependencies([self._forward.assign_add(n)]):
            x = self._count_gradient(x)
        return self.classifier(x, training=training, **kwargs)

    def __getattr__(self, name):
        return getattr(self.classifier, name)

    def reset(self):
        self._forward.assign(0)
        self._gradient.assign(0)

    def counts(self):
        """``{"forward_images", "gradient_images"}`` since the last `reset`."""
        return {"forward_images": int(self._forward.numpy()),
                "gradient_images": int(self._gradient.numpy())}
