package hookline.velocity;

import java.util.List;
import java.util.Map;

/**
 * The JSONPath subset mapping templates use: {@code $}, {@code .name}, {@code ['name']} or
 * {@code ["name"]}, and {@code [index]}. Anything else (wildcards, filters, slices) is refused
 * rather than guessed at.
 */
final class JsonPath {
  private JsonPath() {}

  static Object select(Object root, String expression, Object missing) {
    if (expression == null || !expression.startsWith("$")) {
      throw new IllegalArgumentException("JSONPath must start with $: " + expression);
    }
    Object current = root;
    int i = 1;
    int n = expression.length();
    while (i < n) {
      char c = expression.charAt(i);
      String key = null;
      Integer index = null;
      if (c == '.') {
        int end = i + 1;
        while (end < n && expression.charAt(end) != '.' && expression.charAt(end) != '[') {
          end++;
        }
        key = expression.substring(i + 1, end);
        if (key.isEmpty() || key.equals("*")) {
          throw unsupported(expression);
        }
        i = end;
      } else if (c == '[') {
        int close = expression.indexOf(']', i);
        if (close < 0) {
          throw unsupported(expression);
        }
        String inner = expression.substring(i + 1, close).trim();
        if (inner.length() >= 2
            && (inner.startsWith("'") && inner.endsWith("'")
                || inner.startsWith("\"") && inner.endsWith("\""))) {
          key = inner.substring(1, inner.length() - 1);
        } else if (inner.matches("[0-9]+")) {
          index = Integer.valueOf(inner);
        } else {
          throw unsupported(expression);
        }
        i = close + 1;
      } else {
        throw unsupported(expression);
      }
      if (key != null) {
        if (!(current instanceof Map) || !((Map<?, ?>) current).containsKey(key)) {
          return missing;
        }
        current = ((Map<?, ?>) current).get(key);
      } else {
        if (!(current instanceof List) || index >= ((List<?>) current).size()) {
          return missing;
        }
        current = ((List<?>) current).get(index);
      }
    }
    return current;
  }

  private static IllegalArgumentException unsupported(String expression) {
    return new IllegalArgumentException("unsupported JSONPath: " + expression);
  }
}
