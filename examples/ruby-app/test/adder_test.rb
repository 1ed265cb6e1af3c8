require "minitest/autorun"
require "adder"

class AdderTest < Minitest::Test
  def test_add
    assert_equal 5, Adder.add(2, 3)
  end

  def test_add_negative
    assert_equal(-1, Adder.add(2, -3))
  end
end
